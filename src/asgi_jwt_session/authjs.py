"""Auth.js (v5, ``@auth/core``) compatible session tokens and cookie chunks.

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
  cookie's name and attributes) is split into ``<name>.0``, ``<name>.1``, ...
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto import jwe, jwk
from jwcrypto.common import base64url_decode, base64url_encode

from asgi_jwt_session.tokens import (
    Decoded,
    ExpiredToken,
    InvalidToken,
    TokenCache,
    UnknownKey,
    check_types,
)

__all__ = [
    "AUTHJS_CHUNK_SIZE",
    "AuthJSCodec",
    "AuthJSSessionCodec",
    "authjs_cookie_name",
    "join_authjs_cookie",
    "split_authjs_cookie",
]

SESSION_COOKIE = "authjs.session-token"
SECURE_PREFIX = "__Secure-"
AUTHJS_CHUNK_SIZE = 4096 - 160
"""Longest cookie value Auth.js writes unchunked (its ``CHUNK_SIZE``)."""

ENCODE_ENC = "A256CBC-HS512"
KEY_LENGTHS = {"A256CBC-HS512": 64, "A256GCM": 32}
ALLOWED_ALGS = ["dir", *KEY_LENGTHS]

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def authjs_cookie_name(secure: bool) -> str:
    """The session cookie name Auth.js uses: ``__Secure-`` prefixed on https."""
    return f"{SECURE_PREFIX}{SESSION_COOKIE}" if secure else SESSION_COOKIE


def split_authjs_cookie(name: str, value: str) -> list[tuple[str, str]]:
    """Split a cookie value the way Auth.js does: ``[(name, value)]`` when it fits
    in :data:`AUTHJS_CHUNK_SIZE` characters, otherwise ``name.0``, ``name.1``, ...
    each holding up to that many characters."""
    if not value.isascii():
        raise ValueError("an Auth.js cookie value must be ASCII")
    if len(value) <= AUTHJS_CHUNK_SIZE:
        return [(name, value)]
    count = math.ceil(len(value) / AUTHJS_CHUNK_SIZE)
    return [
        (f"{name}.{i}", value[i * AUTHJS_CHUNK_SIZE : (i + 1) * AUTHJS_CHUNK_SIZE])
        for i in range(count)
    ]


def join_authjs_cookie(cookies: Mapping[str, str], name: str) -> str | None:
    """The session token from request cookies: the chunks ``name.0`` .. ``name.N``
    joined in numeric order, or else the plain ``name`` cookie.

    Returns ``None`` when there is no token, or when the chunks do not run
    ``0..N`` without a gap (a lost chunk makes the token useless anyway).
    """
    prefix = f"{name}."
    chunks: dict[int, str] = {}
    for key, value in cookies.items():
        if not key.startswith(prefix) or not value:
            continue
        suffix = key[len(prefix) :]
        if suffix.isdigit() and suffix.isascii() and suffix == str(int(suffix)):
            chunks[int(suffix)] = value
    if chunks:
        if sorted(chunks) != list(range(len(chunks))):
            return None
        return "".join(chunks[i] for i in range(len(chunks)))
    return cookies.get(name) or None


def _derive_key(secret: str, salt: str, enc: str) -> jwk.JWK:
    length = KEY_LENGTHS[enc]
    raw = HKDF(
        algorithm=hashes.SHA256(),
        length=length,
        salt=salt.encode(),
        info=f"Auth.js Generated Encryption Key ({salt})".encode(),
    ).derive(secret.encode())
    return jwk.JWK(kty="oct", k=base64url_encode(raw))


def _kid(key: jwk.JWK, enc: str) -> str:
    hashalg: hashes.HashAlgorithm = hashes.SHA512() if KEY_LENGTHS[enc] == 64 else hashes.SHA256()
    return str(key.thumbprint(hashalg))


def _other_salt(salt: str) -> str:
    if salt.startswith(SECURE_PREFIX):
        return salt[len(SECURE_PREFIX) :]
    return SECURE_PREFIX + salt


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AuthJSCodec:
    """Encode and decode session tokens exactly as Auth.js v5 (``@auth/core/jwt``).

    ``secret`` is Auth.js's ``AUTH_SECRET``, or a list of them, newest first: the
    first encrypts, all decrypt (matched by ``kid``). ``salt`` is the session cookie
    name (see :func:`authjs_cookie_name`); Auth.js derives different keys for
    ``authjs.session-token`` and ``__Secure-authjs.session-token``.

    ``role_claim`` names the claim that holds the user's role in Auth.js tokens;
    on the Python side it is always ``"role"``.
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        salt: str = SESSION_COOKIE,
        role_claim: str = "role",
        max_age: int = 30 * 24 * 3600,
        leeway: int = 15,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets or not all(isinstance(s, str) and s for s in secrets):
            raise ValueError("secret must be a non-empty string or a list of them")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        self.salt = salt
        self.role_claim = role_claim
        self.max_age = max_age
        self.leeway = leeway
        self._secrets = secrets
        self._keys = self._derive(salt)
        self._encrypt_key = self._keys[ENCODE_ENC][0]

    @property
    def current_kid(self) -> str:
        """The ``kid`` of the key that encrypts (the first secret's)."""
        return self._encrypt_key[0]

    def _derive(self, salt: str) -> dict[str, list[tuple[str, jwk.JWK]]]:
        keys: dict[str, list[tuple[str, jwk.JWK]]] = {}
        for enc in KEY_LENGTHS:
            derived = [_derive_key(s, salt, enc) for s in self._secrets]
            keys[enc] = [(_kid(k, enc), k) for k in derived]
        return keys

    def encode(self, claims: dict[str, Any]) -> str:
        """Claims to an Auth.js session token (compact JWE, A256CBC-HS512).

        ``iat``, ``exp`` (``iat + max_age``) and ``jti`` (a random UUID) are set
        when missing. A ``role`` claim is stored under ``role_claim``.
        """
        payload = dict(claims)
        if self.role_claim != "role" and "role" in payload:
            payload[self.role_claim] = payload.pop("role")
        now = int(time.time())
        payload.setdefault("iat", now)
        payload.setdefault("exp", now + self.max_age)
        payload.setdefault("jti", str(uuid.uuid4()))
        kid, key = self._encrypt_key
        header = {"alg": "dir", "enc": ENCODE_ENC, "kid": kid}
        token = jwe.JWE(orjson.dumps(payload), protected=orjson.dumps(header).decode())
        token.allowed_algs = ALLOWED_ALGS
        token.add_recipient(key)
        return str(token.serialize(compact=True))

    def decode(self, token: str) -> dict[str, Any]:
        """An Auth.js session token to its claims, with the role under ``"role"``.

        Raises :class:`~asgi_jwt_session.tokens.InvalidToken` (or its subclasses
        :class:`~asgi_jwt_session.tokens.ExpiredToken`,
        :class:`~asgi_jwt_session.tokens.UnknownKey`) with the reason; nothing else.
        """
        obj, header = self._parse(token)
        enc = header["enc"]
        candidates = self._keys[enc]
        kid = header.get("kid")
        if kid is not None:
            candidates = [(k, key) for k, key in candidates if k == kid]
            if not candidates:
                raise UnknownKey(self._no_key_message(kid, enc))
        plaintext: bytes | None = None
        for _, key in candidates:
            try:
                obj.decrypt(key)
                plaintext = obj.payload
                break
            except Exception:  # jwcrypto raises several types; all mean "not this key"
                continue
        if plaintext is None:
            if kid is not None:
                raise InvalidToken("Auth.js token failed to decrypt: tampered or corrupt")
            raise UnknownKey(self._no_key_message(None, enc))
        try:
            claims = orjson.loads(plaintext)
        except orjson.JSONDecodeError as exc:
            raise InvalidToken("Auth.js token payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("Auth.js token payload is not a JSON object")
        self._check_times(claims)
        if self.role_claim != "role":
            claims.pop("role", None)
            if self.role_claim in claims:
                claims["role"] = claims.pop(self.role_claim)
        return claims

    def _parse(self, token: str) -> tuple[jwe.JWE, dict[str, Any]]:
        """Syntax and header allow-list checks; no decryption work happens here."""
        if not isinstance(token, str):
            raise InvalidToken("Auth.js token must be a string")
        parts = token.split(".")
        if len(parts) != 5 or not all(_B64URL.fullmatch(p) for p in parts):
            raise InvalidToken("Auth.js token is not a compact JWE (five base64url parts)")
        try:
            # Non-canonical base64url spellings would decode to the same bytes.
            if any(base64url_encode(base64url_decode(p)) != p for p in parts):
                raise InvalidToken("Auth.js token has non-canonical base64url")
            obj = jwe.JWE()
            obj.allowed_algs = ALLOWED_ALGS
            obj.deserialize(token)
            header = obj.jose_header
        except InvalidToken:
            raise
        except Exception as exc:
            raise InvalidToken(f"Auth.js token is malformed: {exc}") from exc
        if not isinstance(header, dict):
            raise InvalidToken("Auth.js token header is not a JSON object")
        if header.get("alg") != "dir":
            raise InvalidToken(
                f"Auth.js token alg {header.get('alg')!r} is not allowed (only 'dir')"
            )
        if header.get("enc") not in KEY_LENGTHS:
            raise InvalidToken(
                f"Auth.js token enc {header.get('enc')!r} is not allowed "
                f"(only {', '.join(KEY_LENGTHS)})"
            )
        if "zip" in header:
            raise InvalidToken("Auth.js token uses compression ('zip'), which is not allowed")
        if "crit" in header:
            raise InvalidToken(f"Auth.js token has unsupported critical headers {header['crit']!r}")
        if "kid" in header and not isinstance(header["kid"], str):
            raise InvalidToken("Auth.js token kid is not a string")
        if parts[1]:
            raise InvalidToken("Auth.js token has an encrypted key, but alg 'dir' has none")
        return obj, header

    def _no_key_message(self, kid: str | None, enc: str) -> str:
        other = _other_salt(self.salt)
        if kid is not None and any(k == kid for k, _ in self._derive(other)[enc]):
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

    def _check_times(self, claims: dict[str, Any]) -> None:
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_number(claims[name]):
                raise InvalidToken(f"Auth.js token claim {name!r} is not a number")
        if "exp" not in claims:
            raise InvalidToken("Auth.js token has no 'exp' claim")
        now = time.time()
        if claims["exp"] <= now - self.leeway:
            raise ExpiredToken("Auth.js token has expired")
        if "nbf" in claims and claims["nbf"] > now + self.leeway:
            raise InvalidToken("Auth.js token is not valid yet ('nbf' is in the future)")
        if "iat" in claims and claims["iat"] > now + self.leeway:
            raise InvalidToken("Auth.js token was issued in the future ('iat')")


class AuthJSSessionCodec:
    """:class:`AuthJSCodec` for the middleware: one cookie name, a decoded-token cache.

    Claims map onto the session as they are: ``sub`` is ``session.user.id``, the role
    claim is ``session.user.role`` (``default_role`` when Auth.js put none in), and
    ``name``, ``email``, ``picture`` and the app's own claims are ``session.user.claims``.
    """

    def __init__(self, codec: AuthJSCodec, *, cache_size: int = 4096,
                 default_role: str = "", max_token_size: int = 12 * 1024) -> None:
        self.codec = codec
        self.leeway = codec.leeway
        self.default_role = default_role
        self.max_token_size = max_token_size
        self.cache = TokenCache(cache_size)
        header = orjson.dumps({"alg": "dir", "enc": ENCODE_ENC, "kid": codec.current_kid})
        self.current_prefix = base64url_encode(header) + "."

    def decode_cached(self, token: str, now: int) -> Decoded:
        decoded = self.cache.lookup(token)
        if decoded is None:
            if len(token) > self.max_token_size:
                raise InvalidToken("Auth.js token is too large")
            claims = self.codec.decode(token)
            for name in ("exp", "iat", "nbf", "auth_time"):
                if isinstance(claims.get(name), float):  # jose writes integers; be lenient
                    claims[name] = int(claims[name])
            if "sub" in claims and "role" not in claims:
                claims["role"] = self.default_role
            decoded = Decoded(check_types(claims))
            self.cache.store(token, decoded)
        decoded.check_times(now, self.leeway)
        return decoded

    def encode(self, claims: dict[str, Any]) -> str:
        return self.codec.encode(claims)

    def is_current(self, token: str) -> bool:
        return token.startswith(self.current_prefix)
