"""Better Auth sessions: the :class:`BetterAuthFormat` wire codec (read-only).

Lets a Python service read the sessions of a Next.js (or any node) front end that
signs users in with Better Auth (``better-auth`` 1.4 to 1.7), with no query on the
ordinary request: it reads Better Auth's **cookie cache**, the
``better-auth.session_data`` cookie, which holds the session and user rows, signed or
encrypted with the app's secret.

What Better Auth writes (``better-auth/dist/cookies``, ``crypto/jwt``):

- ``compact`` (its default strategy): the base64url of
  ``{"session": S, "expiresAt": E, "signature": G}``, where ``S`` is
  ``{session, user, updatedAt, version}``, ``E`` the cache's expiry in milliseconds and
  ``G`` the base64url HMAC-SHA256, keyed with the secret, of ``S`` with ``expiresAt``
  added as its last member;
- ``jwt``: a JWS, ``HS256`` keyed with the secret's UTF-8 bytes, of ``S`` plus ``iat``
  and ``exp``;
- ``jwe`` (and **stateless mode**, a Better Auth with no database, where the cookie
  cache is the session): compact JWE ``dir`` + ``A256CBC-HS512``, the key
  HKDF-SHA256(secret, salt ``"better-auth-session"``, info
  ``"BetterAuth.js Generated Encryption Key"``, 64 bytes), ``kid`` its RFC 7638
  SHA-256 thumbprint; ``S`` plus ``iat``, ``exp`` and ``jti``;
- the cookie is ``__Secure-better-auth.session_data`` on https, chunked into
  ``<name>.0``, ``<name>.1``... past about 4 KB;
- the signed, opaque ``better-auth.session_token`` cookie beside it names the row of
  the ``session`` table: see :mod:`asgi_jwt_session.store.betterauth` for reading the
  tables when the cookie cache is off or has expired.

Secrets as Better Auth reads them: see :func:`betterauth_secrets_from_env`. The compact
and jwt strategies are signed with the current secret only (Better Auth verifies them
with that one alone); jwe decrypts with every versioned secret, picked by ``kid``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwcrypto.jwa import JWA

from asgi_jwt_session.authjs import DECRYPT_ERRORS
from asgi_jwt_session.codec import (
    Compact,
    b64url_decode,
    b64url_encode,
    is_canonical_b64url,
)
from asgi_jwt_session.errors import InvalidToken, UnknownKey
from asgi_jwt_session.keys import SecretKey, secret_strings
from asgi_jwt_session.roles import RoleHierarchy

__all__ = [
    "BETTER_AUTH_ROLES",
    "BetterAuthFormat",
    "BetterAuthWire",
    "Strategy",
    "betterauth_cookie_name",
    "betterauth_secrets_from_env",
]

Strategy = Literal["compact", "jwt", "jwe"]
STRATEGIES = ("compact", "jwt", "jwe")
SECURE_PREFIX = "__Secure-"
DEFAULT_PREFIX = "better-auth"
DEFAULT_SECRET = "better-auth-secret-12345678901234567890"  # Better Auth's dev default
JWE_SALT = b"better-auth-session"
JWE_INFO = b"BetterAuth.js Generated Encryption Key"
JWE_ENC = "A256CBC-HS512"
BETTER_AUTH_MAX_TOKEN_SIZE = 32 * 1024
"""Longest cookie cache read by default (all chunks)."""
BETTER_AUTH_ROLES = RoleHierarchy(["user", "admin"])
"""The admin plugin's roles, lowest first: ``roles=`` for the middleware and guards."""

B64URL = re.compile(r"[A-Za-z0-9_-]+")
JWS = re.compile(r"([A-Za-z0-9_-]{2,256})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{43})")
# The end of a compact cookie cache: its expiry and signature, as JSON.stringify writes them.
COMPACT_HEAD = b'{"session":'
COMPACT_TAIL = re.compile(rb',"expiresAt":([0-9]{1,16}),"signature":"([A-Za-z0-9_-]{43})"\}\Z')
JWS_HEADER = frozenset({"alg", "typ"})
COMPACT_HEADER: Mapping[str, Any] = {"alg": "compact"}  # never changed: shared
# User members copied into the session's claims (the rest stay with Better Auth).
USER_CLAIMS = ("name", "email", "image", "emailVerified")


def betterauth_cookie_name(secure: bool, prefix: str = DEFAULT_PREFIX) -> str:
    """The cookie cache's name: ``__Secure-`` prefixed on https."""
    name = f"{prefix}.session_data"
    return SECURE_PREFIX + name if secure else name


def betterauth_secrets_from_env(environ: Mapping[str, str] | None = None) -> list[str]:
    """Better Auth's secrets from the environment, current first: the ``secret_key``
    for a middleware that reads its cookies.

    ``BETTER_AUTH_SECRETS`` (``"2:new-secret,1:old-secret"``, current first) when set,
    followed by ``BETTER_AUTH_SECRET`` (else ``AUTH_SECRET``) as the legacy secret when
    it is another one; otherwise ``BETTER_AUTH_SECRET``, else ``AUTH_SECRET``, alone.
    Better Auth's built-in development secret is never returned: no secret raises
    ``ValueError``. Both apply only when the app's config passes no ``secret`` or
    ``secrets`` of its own. ``environ`` defaults to ``os.environ``.
    """
    env = os.environ if environ is None else environ
    legacy = env.get("BETTER_AUTH_SECRET") or env.get("AUTH_SECRET") or ""
    secrets: list[str] = []
    versioned = env.get("BETTER_AUTH_SECRETS")
    if versioned:
        seen: set[int] = set()
        for position, entry in enumerate(versioned.split(","), 1):
            version, colon, value = entry.strip().partition(":")
            value = value.strip()
            if not colon or not version.strip().isdigit() or not value:
                raise ValueError(f"BETTER_AUTH_SECRETS entry {position} is not <version>:<secret>")
            if int(version) in seen:
                raise ValueError(f"BETTER_AUTH_SECRETS has version {int(version)} twice")
            seen.add(int(version))
            secrets.append(value)
    if legacy and legacy != DEFAULT_SECRET and legacy not in secrets:
        secrets.append(legacy)
    if not secrets:
        raise ValueError("no Better Auth secret in the environment: set BETTER_AUTH_SECRET "
                         "(or BETTER_AUTH_SECRETS)")
    return secrets


def jwe_key(secret: str) -> tuple[str, bytes]:
    """``(kid, key)`` of the jwe strategy for ``secret``."""
    raw = HKDF(algorithm=hashes.SHA256(), length=64, salt=JWE_SALT,
               info=JWE_INFO).derive(secret.encode())
    jwk = orjson.dumps({"k": b64url_encode(raw), "kty": "oct"})  # RFC 7638 member order
    return b64url_encode(hashlib.sha256(jwk).digest()), raw


def parse_time(value: Any, name: str) -> int:
    """An ISO 8601 date as Better Auth stores it (``toJSON``) to epoch seconds."""
    if type(value) is not str or len(value) > 40:
        raise InvalidToken(f"Better Auth {name} is not a date")
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidToken(f"Better Auth {name} is not a date") from exc
    if when.tzinfo is None:
        raise InvalidToken(f"Better Auth {name} has no time zone")
    return int(when.timestamp())


def session_role(role: str | None, roles: RoleHierarchy, default: str) -> str:
    """A Better Auth user's role for the session: ``default`` when there is none, and
    the highest of several (the admin plugin writes ``"user,admin"``) known to ``roles``."""
    if role is None:
        return default
    if "," in role:
        known = [part for part in map(str.strip, role.split(",")) if part in roles]
        if known:
            return max(known, key=roles.rank.__getitem__)
    return role


def text_id(value: Any, name: str) -> str:
    if type(value) is str and value:
        return value
    if type(value) is int:  # numeric ids (a serial primary key)
        return str(value)
    raise InvalidToken(f"Better Auth {name} is not an id")


class BetterAuthWire:
    """Better Auth's cookie cache in one strategy: verify or decrypt, then map the
    session and user it caches onto this package's claims.

    Read-only: ``encode`` raises. See :class:`BetterAuthFormat` for the options.
    """

    headers: Mapping[str, Mapping[str, Any]] = {}

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        strategy: Strategy = "compact",
        role_field: str = "role",
        default_role: str = "user",
        impersonator_role: str = "admin",
        version: str = "1",
        roles: RoleHierarchy = BETTER_AUTH_ROLES,
    ) -> None:
        secrets = secret_strings(secret, "a Better Auth secret")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}")
        self.strategy = strategy
        self.mac_key = secrets[0].encode()  # compact and jwt: the current secret only
        is_jwe = strategy == "jwe"
        self.keys = [jwe_key(s) for s in secrets] if is_jwe else []
        self.encs = frozenset({JWE_ENC}) if is_jwe else frozenset()
        self.cbc = JWA.encryption_alg(JWE_ENC)
        self.role_field = role_field
        self.default_role = default_role
        self.impersonator_role = impersonator_role
        self.version = version
        self.roles = roles
        if strategy != "jwe":
            # Not a compact JWE: this wire checks the shape itself (the pipeline's size
            # cap applies first), before any cryptographic work.
            self.parse = self.parse_compact if strategy == "compact" else self.parse_jws

    # -- shapes: strict, before any work ---------------------------------------------------

    def parse_compact(self, token: str) -> Compact:
        if B64URL.fullmatch(token) is None or not is_canonical_b64url(token):
            raise InvalidToken("Better Auth compact cookie cache is not canonical base64url")
        return tuple.__new__(Compact, (token, "", COMPACT_HEADER, b"", b"", b""))

    def parse_jws(self, token: str) -> Compact:
        match = JWS.fullmatch(token)
        if match is None:
            raise InvalidToken("Better Auth jwt cookie cache is not a compact JWS")
        header_segment, payload, signature = match.groups()
        if not all(map(is_canonical_b64url, match.groups())):
            raise InvalidToken("Better Auth jwt cookie cache is not canonical base64url")
        try:
            header = orjson.loads(b64url_decode(header_segment))
        except orjson.JSONDecodeError as exc:
            raise InvalidToken("token header is not JSON") from exc
        if (type(header) is not dict or header.get("alg") != "HS256"
                or not header.keys() <= JWS_HEADER or header.get("typ", "JWT") != "JWT"):
            raise InvalidToken(f"token header {header!r} is not allowed (only HS256)")
        return tuple.__new__(Compact, (token, header_segment, header, b"",
                                       b64url_decode(payload), b64url_decode(signature)))

    # -- verify or decrypt ----------------------------------------------------------------

    def decrypt(self, compact: Compact) -> bytes:
        if self.strategy == "compact":
            return self.verify_compact(compact.token)
        if self.strategy == "jwt":
            # The signing input: the token up to its signature segment.
            signed = compact.token[:compact.token.rindex(".")].encode("ascii")
            expected = hmac.digest(self.mac_key, signed, "sha256")
            if not hmac.compare_digest(expected, compact.tag):
                raise UnknownKey("Better Auth jwt cookie cache: bad signature (another "
                                 "secret, or tampered)")
            return compact.ciphertext
        return self.decrypt_jwe(compact)

    def verify_compact(self, token: str) -> bytes:
        text = b64url_decode(token)
        tail = COMPACT_TAIL.search(text, len(COMPACT_HEAD))  # the end: S may hold the like
        if not text.startswith(COMPACT_HEAD) or tail is None:
            raise InvalidToken("Better Auth compact cookie cache has another shape")
        cached = text[len(COMPACT_HEAD):tail.start()]  # S, as Better Auth serialized it
        if not cached.endswith(b"}") or cached == b"{}":
            raise InvalidToken("Better Auth compact cookie cache has another shape")
        # What Better Auth signs: JSON.stringify({...S, expiresAt}), S's text with
        # expiresAt as its last member (S never has one of its own).
        signed = cached[:-1] + b',"expiresAt":' + tail.group(1) + b"}"
        expected = b64url_encode(hmac.digest(self.mac_key, signed, "sha256"))
        if not hmac.compare_digest(expected.encode(), tail.group(2)):
            raise UnknownKey("Better Auth compact cookie cache: bad signature (another "
                             "secret, or tampered)")
        # The cached session, with the expiry as exp (seconds) beside it.
        return (cached[:-1] + b',"exp":' + str(int(tail.group(1)) // 1000).encode() + b"}")

    def decrypt_jwe(self, compact: Compact) -> bytes:
        kid = compact.header.get("kid")
        candidates = self.keys if kid is None else [k for k in self.keys if k[0] == kid]
        if not candidates:
            raise UnknownKey(f"no Better Auth secret matches the cookie cache's kid {kid!r}")
        aad = compact.header_segment.encode("ascii")
        iv, ciphertext, tag = compact.iv, compact.ciphertext, compact.tag
        for _, raw in candidates:
            try:
                plaintext: bytes = self.cbc.decrypt(raw, aad, iv, ciphertext, tag)
            except DECRYPT_ERRORS:
                continue
            if plaintext:
                return plaintext
        raise UnknownKey("Better Auth jwe cookie cache failed to decrypt: another secret, "
                         "or tampered")

    # -- the cached rows to claims --------------------------------------------------------

    def claims(self, cached: dict[str, Any]) -> dict[str, Any]:
        session, user = cached.get("session"), cached.get("user")
        if type(session) is not dict or type(user) is not dict:
            raise InvalidToken("Better Auth cookie cache holds no session and user")
        if cached.get("version", "1") != self.version:
            raise InvalidToken("Better Auth cookie cache of another version")
        user_id = text_id(user.get("id"), "user.id")
        if text_id(session.get("userId"), "session.userId") != user_id:
            raise InvalidToken("Better Auth cookie cache: the session is another user's")
        exp = cached.get("exp")
        if type(exp) is not int:
            raise InvalidToken("Better Auth cookie cache has no expiry")
        issued = cached.get("iat")
        updated = cached.get("updatedAt")
        if issued is None and type(updated) is int:
            issued = updated // 1000
        if type(issued) is not int:
            raise InvalidToken("Better Auth cookie cache has no time of issue")
        ban_expires = user.get("banExpires")
        # Any value but false/0/none is a ban (an adapter without booleans writes 1).
        if user.get("banned") not in (None, False) and (
                ban_expires is None or parse_time(ban_expires, "user.banExpires") > issued):
            raise InvalidToken("Better Auth user is banned")
        role = user.get(self.role_field)
        if role is not None and type(role) is not str:
            raise InvalidToken(f"Better Auth user.{self.role_field} is not text")
        role = session_role(role, self.roles, self.default_role)
        claims: dict[str, Any] = {
            "sub": user_id,
            "role": role,
            "jti": text_id(session.get("id"), "session.id"),
            "iat": issued,
            "chk": issued,  # the rows were read from Better Auth's tables then
            "exp": min(exp, parse_time(session.get("expiresAt"), "session.expiresAt")),
        }
        for name in USER_CLAIMS:
            if user.get(name) is not None:
                claims[name] = user[name]
        impersonator = session.get("impersonatedBy")
        if impersonator is not None:
            claims["act"] = {"sub": text_id(impersonator, "session.impersonatedBy"),
                             "role": self.impersonator_role}
        return claims

    def encode(self, claims: dict[str, Any]) -> str:
        raise NotImplementedError("Better Auth's cookie cache is read-only here")

    def is_current(self, token: str) -> bool:
        return True  # never re-issued here


class BetterAuthFormat:
    """Read the sessions of a Better Auth app from its cookie cache.

    ``JWTSessionMiddleware(app, secret_key=betterauth_secrets_from_env(),
    format=BetterAuthFormat(strategy="compact"), roles=BETTER_AUTH_ROLES)``: the
    ``secret_key`` is Better Auth's secret (a string, or its versioned secrets current
    first), and ``strategy`` its ``session.cookieCache.strategy`` (``"compact"``, its
    default, ``"jwt"`` or ``"jwe"``; stateless mode is ``"jwe"``). A cookie of another
    strategy, secret or version reads as signed out, never as an error.

    - ``role_field``: the user field holding the role (the admin plugin's ``role``);
      ``default_role`` for users without one. Several roles (the admin plugin writes
      ``"user,admin"``) give the highest of them in ``roles`` (the middleware's
      hierarchy; :data:`BETTER_AUTH_ROLES` by default).
    - ``impersonator_role``: the role of an impersonating admin (the session's
      ``impersonatedBy`` becomes the session's actor, ``session.actor``).
    - ``version``: ``session.cookieCache.version`` when the app sets one.
    - ``cookie_prefix``: ``advanced.cookiePrefix``; a ``session_cookie`` other than
      ``"session"`` is a custom ``advanced.cookies.session_data.name``.

    The session's id (``session.jti``) is Better Auth's session id; ``exp`` is the
    earlier of the cookie cache's expiry and the session's own; ``chk`` and ``iat``
    are when Better Auth read the rows it cached. ``name``, ``email``, ``image`` and
    ``emailVerified`` are ``session.user.claims``; the session token never leaves
    Better Auth's cookie.

    Read-only: Better Auth owns its cookies. Its cookie cache is a copy of its own
    rows, refreshed by Better Auth from its database (or, in stateless mode, from the
    cookie itself): a cookie written here would be a second source of truth Better
    Auth could not tell from its own, and stateless mode has nowhere to keep a change.
    Changes go through Better Auth (its API, or its tables).
    """

    writable = False
    owns_cookie = False
    chunk_size: int | None = None

    def __init__(
        self,
        strategy: Strategy = "compact",
        *,
        role_field: str = "role",
        default_role: str = "user",
        impersonator_role: str = "admin",
        version: str = "1",
        cookie_prefix: str = DEFAULT_PREFIX,
        max_token_size: int = BETTER_AUTH_MAX_TOKEN_SIZE,
        roles: RoleHierarchy = BETTER_AUTH_ROLES,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}")
        if max_token_size <= 0:
            raise ValueError("max_token_size must be positive")
        self.strategy = strategy
        self.role_field = role_field
        self.default_role = default_role
        self.impersonator_role = impersonator_role
        self.version = version
        self.cookie_prefix = cookie_prefix
        self.max_token_size = max_token_size
        self.roles = roles

    def cookies(self, secret_key: SecretKey, session_cookie: str
                ) -> list[tuple[str, BetterAuthWire]]:
        if not isinstance(secret_key, str | list | tuple):
            raise TypeError("Better Auth's secret_key is a string or a list of strings")
        wire = BetterAuthWire(secret_key, strategy=self.strategy, role_field=self.role_field,
                              default_role=self.default_role,
                              impersonator_role=self.impersonator_role, version=self.version,
                              roles=self.roles)
        if session_cookie != "session":
            return [(SECURE_PREFIX + session_cookie, wire), (session_cookie, wire)]
        return [(betterauth_cookie_name(True, self.cookie_prefix), wire),
                (betterauth_cookie_name(False, self.cookie_prefix), wire)]

    def __repr__(self) -> str:
        return (f"BetterAuthFormat({self.strategy!r}, role_field={self.role_field!r}, "
                f"default_role={self.default_role!r})")
