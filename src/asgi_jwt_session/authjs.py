"""Auth.js (v5, ``@auth/core``) session tokens: the :class:`AuthJSFormat` wire codec.

Lets a Python service share sessions with a Next.js front end that signs users in
with Auth.js: it reads the ``authjs.session-token`` cookie Auth.js writes, and writes
tokens Auth.js reads back.

What Auth.js does (``@auth/core/jwt``):

- compact JWE, ``alg: "dir"``, ``enc: "A256CBC-HS512"`` (decoding also accepts
  ``A256GCM``);
- the key is HKDF-SHA256 of the secret, salt = the cookie name, info =
  ``"Auth.js Generated Encryption Key (<salt>)"``, 64 bytes (32 for ``A256GCM``);
- ``kid`` is the RFC 7638 thumbprint of the derived key as an ``oct`` JWK, hashed
  with SHA-(8 * key length): SHA-512 for A256CBC-HS512, SHA-256 for A256GCM;
- a list of secrets rotates keys: the first encrypts, decoding picks by ``kid``;
- 15 s clock tolerance, 30 days default ``maxAge``;
- a cookie value longer than 3936 characters (4096 less an estimated 160 for the
  cookie's name and attributes) is split into ``<name>.0``, ``<name>.1``, ...;
  Auth.js sets no limit on the number of chunks;
- ``AUTH_SECRET`` is one literal secret (no splitting): see
  :func:`authjs_secrets_from_env` for how Auth.js reads rotated secrets.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwe, jwk
from jwcrypto.jwa import JWA

from asgi_jwt_session.codec import Codec, Compact, b64url_encode
from asgi_jwt_session.errors import InvalidToken, UnknownKey
from asgi_jwt_session.keys import SecretKey, secret_strings

__all__ = [
    "AUTHJS_CHUNK_SIZE",
    "AuthJSCodec",
    "AuthJSFormat",
    "AuthJSWire",
    "authjs_cookie_name",
    "authjs_secrets_from_env",
]

SESSION_COOKIE = "authjs.session-token"
SECURE_PREFIX = "__Secure-"
AUTHJS_CHUNK_SIZE = 4096 - 160
"""Longest cookie value Auth.js writes unchunked (its ``CHUNK_SIZE``)."""
AUTHJS_LEEWAY = 15  # Auth.js's clock tolerance, seconds
AUTHJS_MAX_TOKEN_SIZE = 32 * 1024
"""Longest Auth.js token read by default (all chunks): Auth.js itself has no limit, and
Node's default request header limit (16 KiB) keeps real ones well under this."""

ENCODE_ENC = "A256CBC-HS512"
KEY_LENGTHS = {"A256CBC-HS512": 64, "A256GCM": 32}
ENCS = frozenset(KEY_LENGTHS)
ALLOWED_ALGS = ["dir", *KEY_LENGTHS]
TIME_CLAIMS = ("exp", "iat", "nbf", "auth_time")
# What jwcrypto's content decryption (jwa: RFC 7518 5.2.2.2 and 5.3) raises on a token
# this key did not make: InvalidSignature (A256CBC-HS512's MAC), InvalidTag (A256GCM's
# tag), ValueError (PKCS7 padding; a ciphertext not whole AES blocks).
DECRYPT_ERRORS = (InvalidSignature, InvalidTag, ValueError)


def authjs_cookie_name(secure: bool) -> str:
    """The session cookie name Auth.js uses: ``__Secure-`` prefixed on https."""
    return f"{SECURE_PREFIX}{SESSION_COOKIE}" if secure else SESSION_COOKIE


def authjs_secrets_from_env(
    environ: Mapping[str, str] | None = None,
    *,
    framework: Literal["next-auth", "core"] = "next-auth",
) -> list[str]:
    """The secrets Auth.js takes from the environment, newest (the encrypting one)
    first: the ``secret_key`` for a middleware that shares Auth.js's cookie.

    ``AUTH_SECRET`` is one secret, taken literally (never split). ``@auth/core``'s own
    ``setEnvDefaults`` (``framework="core"``: SvelteKit, Express, Qwik...) puts
    ``AUTH_SECRET_3``, ``AUTH_SECRET_2``, ``AUTH_SECRET_1`` in front of it, in that
    order, skipping unset or empty ones. NextAuth v5 (``framework="next-auth"``, the
    default) first takes ``AUTH_SECRET``, else ``NEXTAUTH_SECRET``, alone: the
    numbered ones count only when neither is set. Both apply only when the app's
    Auth.js config sets no ``secret`` of its own. ``environ`` defaults to
    ``os.environ``; no secret at all raises ``ValueError``.
    """
    env = os.environ if environ is None else environ
    if framework not in ("next-auth", "core"):
        raise ValueError("framework must be 'next-auth' or 'core'")
    if framework == "next-auth":
        # config.secret ??= AUTH_SECRET ?? NEXTAUTH_SECRET (an empty string counts as set
        # here, then as unset in @auth/core, which reads the numbered ones).
        secret = env["AUTH_SECRET"] if "AUTH_SECRET" in env else env.get("NEXTAUTH_SECRET")
        if secret:
            return [secret]
    secrets = [env["AUTH_SECRET"]] if env.get("AUTH_SECRET") else []
    for index in (1, 2, 3):
        numbered = env.get(f"AUTH_SECRET_{index}")
        if numbered:
            secrets.insert(0, numbered)
    if not secrets:
        names = "AUTH_SECRET (or NEXTAUTH_SECRET)" if framework == "next-auth" else "AUTH_SECRET"
        raise ValueError(f"no Auth.js secret in the environment: set {names}")
    return secrets


def derive_raw_key(secret: str, salt: str, enc: str) -> bytes:
    """Auth.js's key bytes: HKDF-SHA256 of the secret, salted with the cookie name."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_LENGTHS[enc],
        salt=salt.encode(),
        info=f"Auth.js Generated Encryption Key ({salt})".encode(),
    ).derive(secret.encode())


def derive_key(secret: str, salt: str, enc: str) -> jwk.JWK:
    """Auth.js's key as an ``oct`` JWK (see :func:`derive_raw_key`)."""
    return jwk.JWK(kty="oct", k=b64url_encode(derive_raw_key(secret, salt, enc)))


def key_id(key: jwk.JWK, enc: str) -> str:
    """Auth.js's ``kid``: the key's RFC 7638 thumbprint, SHA-512 for a 64-byte key."""
    hashalg: hashes.HashAlgorithm = hashes.SHA512() if KEY_LENGTHS[enc] == 64 else hashes.SHA256()
    return str(key.thumbprint(hashalg))


def other_salt(salt: str) -> str:
    if salt.startswith(SECURE_PREFIX):
        return salt[len(SECURE_PREFIX) :]
    return SECURE_PREFIX + salt


class AuthJSWire:
    """Auth.js's wire codec for one cookie name (the HKDF salt).

    ``secret`` is Auth.js's ``AUTH_SECRET``, or a list of them, newest first: the
    first encrypts, all decrypt (matched by ``kid``; a token without one tries each).
    ``role_claim`` names the claim that holds the role in Auth.js tokens (always
    ``"role"`` on the Python side); ``default_role`` is the role of a token that names
    a user but no role.
    """

    encs = ENCS

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        salt: str = SESSION_COOKIE,
        role_claim: str = "role",
        default_role: str = "",
        max_age: int = 30 * 24 * 3600,
    ) -> None:
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.secrets = secret_strings(secret, "an Auth.js secret")
        self.salt = salt
        self.role_claim = role_claim
        self.default_role = default_role
        self.max_age = max_age
        derived = self.derive(salt)
        # By enc: (kid, JWK) for encode and the thumbprints, (kid, raw key) for decrypt.
        self.keys = {enc: [(kid, key) for kid, key, _ in triples]
                     for enc, triples in derived.items()}
        self.raw_keys = {enc: [(kid, raw) for kid, _, raw in triples]
                         for enc, triples in derived.items()}
        # jwcrypto's own RFC 7518 content decryption, one (stateless) object per enc.
        self.encryptions: dict[str, Any] = {enc: JWA.encryption_alg(enc) for enc in KEY_LENGTHS}
        self.current_kid, self.current_key = self.keys[ENCODE_ENC][0]
        header = {"alg": "dir", "enc": ENCODE_ENC, "kid": self.current_kid}
        self.current_header = orjson.dumps(header).decode()
        segment = b64url_encode(self.current_header.encode())
        self.current_prefix = segment + "."
        self.headers: dict[str, Mapping[str, Any]] = {segment: header}

    def derive(self, salt: str) -> dict[str, list[tuple[str, jwk.JWK, bytes]]]:
        """By enc: ``(kid, JWK, raw key)`` for each secret, in order."""
        keys: dict[str, list[tuple[str, jwk.JWK, bytes]]] = {}
        for enc in KEY_LENGTHS:
            keys[enc] = []
            for secret in self.secrets:
                raw = derive_raw_key(secret, salt, enc)
                key = jwk.JWK(kty="oct", k=b64url_encode(raw))
                keys[enc].append((key_id(key, enc), key, raw))
        return keys

    def decrypt(self, compact: Compact) -> bytes:
        # The shared checks passed: dir, an allowed enc, canonical base64url, the IV and
        # tag sizes of enc. What jwcrypto's JWE.deserialize would do from here is the
        # content decryption alone, with the header segment as the AAD (RFC 7516 5.2
        # step 14): call jwcrypto's algorithm object for it, without the JWE object.
        enc = compact.header["enc"]
        candidates = self.raw_keys[enc]
        kid = compact.header.get("kid")
        if kid is not None:
            candidates = [(k, raw) for k, raw in candidates if k == kid]
            if not candidates:
                raise UnknownKey(self.no_key_message(kid, enc))
        decrypt = self.encryptions[enc].decrypt
        aad = compact.header_segment.encode("ascii")
        iv, ciphertext, tag = compact.iv, compact.ciphertext, compact.tag
        for _, raw in candidates:
            try:
                plaintext: bytes = decrypt(raw, aad, iv, ciphertext, tag)
            except DECRYPT_ERRORS:  # not this key (or tampered)
                continue
            if plaintext:  # JWE.deserialize refuses an empty plaintext: so do we
                return plaintext
        if kid is not None:
            raise InvalidToken("Auth.js token failed to decrypt: tampered or corrupt")
        raise UnknownKey(self.no_key_message(None, enc))

    def claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        for name in TIME_CLAIMS:
            value = claims.get(name)
            if value is None:
                continue
            if type(value) is bool or not isinstance(value, int | float):
                raise InvalidToken(f"Auth.js token claim {name!r} is not a number")
            if isinstance(value, float):  # jose writes integers; read seconds as they are
                if not value < 1e15:  # inf, nan and milliseconds are no times
                    raise InvalidToken(f"Auth.js token claim {name!r} is not a time")
                claims[name] = int(value)
        if self.role_claim != "role":
            claims.pop("role", None)
            if self.role_claim in claims:
                claims["role"] = claims.pop(self.role_claim)
        if "sub" in claims and "role" not in claims:
            claims["role"] = self.default_role
        return claims

    def encode(self, claims: dict[str, Any]) -> str:
        """Claims to an Auth.js session token (compact JWE, A256CBC-HS512).

        ``iat``, ``exp`` (``iat + max_age``) and ``jti`` (a random UUID) are set
        when missing. A ``role`` claim is stored under ``role_claim``. ``sid`` (the
        session id) is the ``jti`` unless set: Auth.js draws a new ``jti`` whenever it
        re-encodes the token, and passes ``sid`` through, so the session registry
        knows the session by it.
        """
        payload = dict(claims)
        if self.role_claim != "role" and "role" in payload:
            payload[self.role_claim] = payload.pop("role")
        now = int(time.time())
        payload.setdefault("iat", now)
        payload.setdefault("exp", now + self.max_age)
        payload.setdefault("sid", payload.setdefault("jti", str(uuid.uuid4())))
        token = jwe.JWE(orjson.dumps(payload), protected=self.current_header)
        token.allowed_algs = ALLOWED_ALGS
        token.add_recipient(self.current_key)
        return str(token.serialize(compact=True))

    def is_current(self, token: str) -> bool:
        return token.startswith(self.current_prefix)

    def no_key_message(self, kid: str | None, enc: str) -> str:
        other = other_salt(self.salt)
        if kid is not None and any(k == kid for k, _, _ in self.derive(other)[enc]):
            return (
                f"no key matches the Auth.js token: it was made with salt {other!r} "
                f"but this codec uses salt {self.salt!r}. The salt is the cookie name; "
                f"pass salt={other!r} (or authjs_cookie_name(secure=...))."
            )
        which = f"kid {kid!r}" if kid is not None else "no kid"
        return (
            f"no key matches the Auth.js token ({which}). Most likely the secret differs "
            f"from Auth.js's AUTH_SECRET, or the salt (the cookie name) differs: this "
            f"codec uses salt {self.salt!r}, while Auth.js uses {authjs_cookie_name(True)!r} "
            f"on https and {authjs_cookie_name(False)!r} on http."
        )


class AuthJSCodec(Codec):
    """Encode and decode session tokens exactly as Auth.js v5 (``@auth/core/jwt``),
    through the shared decode pipeline; see :class:`AuthJSWire` for the options.

    ``decode`` raises :class:`~asgi_jwt_session.errors.InvalidToken` (or its
    subclasses ``ExpiredToken``, ``UnknownKey``) with the reason; nothing else.
    """

    wire: AuthJSWire

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        salt: str = SESSION_COOKIE,
        role_claim: str = "role",
        default_role: str = "",
        max_age: int = 30 * 24 * 3600,
        leeway: int = AUTHJS_LEEWAY,
        cache_size: int = 0,
        max_token_size: int = 12 * 1024,
    ) -> None:
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        wire = AuthJSWire(secret, salt=salt, role_claim=role_claim, default_role=default_role,
                          max_age=max_age)
        super().__init__(wire, leeway=leeway, cache_size=cache_size,
                         max_token_size=max_token_size)

    @property
    def salt(self) -> str:
        return self.wire.salt

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key that encrypts (the first secret's)."""
        return self.wire.current_kid


class AuthJSFormat:
    """Read (and optionally write) the session cookie Auth.js v5 (NextAuth) writes.

    ``JWTSessionMiddleware(app, secret_key=AUTH_SECRET, format=AuthJSFormat())``: the
    middleware's ``secret_key`` is Auth.js's ``AUTH_SECRET`` (a string, or a list of
    them newest first). The cookie is ``__Secure-authjs.session-token`` on https and
    ``authjs.session-token`` on http, each with a key of its own; a ``session_cookie``
    other than the default ``"session"`` is the custom name given to Auth.js as
    ``cookies.sessionToken.name`` (one name, both schemes).

    - ``write``: also write the cookie when the session changes here (a role refresh,
      sign-out); off by default, so Auth.js stays the only writer.
    - ``role_claim``: the Auth.js claim that holds the role (``"role"``).
    - ``default_role``: the role of a session whose token has none.

    Claims map onto the session as they are: ``sub`` is ``session.user.id``, the role
    claim is ``session.user.role``, and ``name``, ``email``, ``picture`` and the app's
    own claims are ``session.user.claims``. Values over 3936 characters are chunked
    as Auth.js chunks them.

    Auth.js owns the cookie. Tokens are read up to ``max_token_size`` characters (all
    chunks), even past the middleware's ``max_cookie_size``, which bounds only what the
    Python side writes; a longer one reads as no session and is left as it is, never
    expired, as is one whose re-issue would not fit ``max_cookie_size`` (a warning is
    logged). A token the Python side re-issues keeps the lifetime of the one it
    replaces (``exp - iat``: Auth.js's ``session.maxAge``), ``max_age`` at most.
    """

    chunk_size: int | None = AUTHJS_CHUNK_SIZE
    owns_cookie = False

    def __init__(self, *, write: bool = False, role_claim: str = "role",
                 default_role: str = "", max_token_size: int = AUTHJS_MAX_TOKEN_SIZE) -> None:
        if max_token_size <= 0:
            raise ValueError("max_token_size must be positive")
        self.writable = write
        self.role_claim = role_claim
        self.default_role = default_role
        self.max_token_size = max_token_size

    def cookies(self, secret_key: SecretKey, session_cookie: str) -> list[tuple[str, AuthJSWire]]:
        secrets = secret_strings(secret_key, "an Auth.js secret")
        names = ([authjs_cookie_name(True), authjs_cookie_name(False)]
                 if session_cookie == "session" else [session_cookie])
        return [(name, AuthJSWire(secrets, salt=name, role_claim=self.role_claim,
                                  default_role=self.default_role)) for name in names]

    def __repr__(self) -> str:
        return (f"AuthJSFormat(write={self.writable!r}, role_claim={self.role_claim!r}, "
                f"default_role={self.default_role!r})")
