"""Claims to compact JWE and back: allow-list, time checks, decoded-token cache."""

from __future__ import annotations

import base64
import re
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

import orjson
from jwcrypto import jwe
from jwcrypto.common import JWException

from asgi_jwt_session.keys import Keyring, SecretKey

ALG = "dir"
ENC = "A256GCM"
# Header members a token of ours may carry; anything else (zip, crit, jku, jwk...) is refused.
ALLOWED_HEADER = frozenset({"alg", "enc", "kid", "typ", "cty"})
DEFAULT_MAX_TOKEN_SIZE = 12 * 1024

# dir + A256GCM compact form: header . (empty key) . 96-bit iv . ciphertext . 128-bit tag
COMPACT = re.compile(
    r"([A-Za-z0-9_-]{2,512})\.\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})"
)
# Last base64url character when the unused low bits must be zero (canonical spelling).
CANONICAL_TAIL = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}

# Types of the registered claims; anything else is left to the application.
CLAIM_TYPES: dict[str, type | tuple[type, ...]] = {
    "sub": str,
    "role": str,
    "jti": str,
    "ver": int,
    "iat": int,
    "exp": int,
    "nbf": int,
    "chk": int,
    "auth_time": int,
    "data": dict,
}


MISSING: Any = object()


class InvalidToken(ValueError):
    """A token that must be treated as no session. The message says why."""


class ExpiredToken(InvalidToken):
    """The token was valid once but its ``exp`` has passed."""


class UnknownKey(InvalidToken):
    """The token names a key (``kid``) that this keyring does not hold."""


def is_canonical_b64url(part: str) -> bool:
    """True when ``part`` is the one canonical unpadded base64url spelling of its bytes."""
    remainder = len(part) % 4
    if remainder == 1:
        return False
    return remainder == 0 or part[-1] in CANONICAL_TAIL[remainder]


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def check_types(claims: Any) -> dict[str, Any]:
    """Check the registered claims' types; return the claims or raise InvalidToken."""
    if type(claims) is not dict:
        raise InvalidToken("token payload is not a JSON object")
    for name, expected in CLAIM_TYPES.items():
        value = claims.get(name, MISSING)
        # null is a wrong type too: {"sub": null} must not sign in a user with no id.
        if value is not MISSING and (type(value) is bool or not isinstance(value, expected)):
            raise InvalidToken(f"claim {name!r} has the wrong type")
    if claims.get("exp") is None:
        raise InvalidToken("token has no 'exp' claim")
    if "sub" in claims and "role" not in claims:
        raise InvalidToken("token names a user but no role")
    return claims


class Decoded:
    """A decrypted, type-checked token as the cache keeps it.

    ``claims`` holds every claim but ``data`` and must not be changed; ``data`` is the
    free-form session dict still as JSON, so each request parses its own copy and no
    request can change what the next one reads. ``memo`` is for the session layer to
    keep what it derives from the claims (it is immutable there).
    """

    __slots__ = ("claims", "data", "exp", "iat", "memo", "nbf")

    def __init__(self, claims: dict[str, Any]) -> None:
        data = claims.pop("data", None)
        self.data = orjson.dumps(data) if data else None
        self.claims = claims
        self.exp: int = claims["exp"]
        self.iat: int | None = claims.get("iat")
        self.nbf: int | None = claims.get("nbf")
        self.memo: Any = None

    def check_times(self, now: int, leeway: int) -> None:
        if now > self.exp + leeway:
            raise ExpiredToken("token has expired")
        if self.nbf is not None and now + leeway < self.nbf:
            raise InvalidToken("token is not valid yet ('nbf' in the future)")
        if self.iat is not None and now + leeway < self.iat:
            raise InvalidToken("token was issued in the future ('iat')")

    def to_dict(self) -> dict[str, Any]:
        """A fresh dict of all the claims, ``data`` included, sharing nothing with the cache."""
        claims: dict[str, Any] = orjson.loads(orjson.dumps(self.claims))
        if self.data is not None:
            claims["data"] = orjson.loads(self.data)
        return claims


class SessionCodec(Protocol):
    """What the middleware needs of a token format."""

    def decode_cached(self, token: str, now: int) -> Decoded: ...

    def encode(self, claims: dict[str, Any]) -> str: ...

    def is_current(self, token: str) -> bool: ...


class TokenCache(OrderedDict[str, Decoded]):
    """A bounded LRU map from the exact token string to its :class:`Decoded` entry."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache_size must be >= 0")
        super().__init__()
        self.size = size

    def lookup(self, token: str) -> Decoded | None:
        decoded = self.get(token)
        if decoded is not None:
            try:  # noqa: SIM105 (hot path: try is cheaper than suppress)
                self.move_to_end(token)
            except KeyError:  # evicted by another thread meanwhile
                pass
        return decoded

    def store(self, token: str, decoded: Decoded) -> None:
        if self.size:
            self[token] = decoded
            if len(self) > self.size:
                try:  # noqa: SIM105
                    self.popitem(last=False)
                except KeyError:
                    pass


class TokenCodec:
    """Encrypts claims into compact JWE (``dir`` + ``A256GCM``) and decrypts them back.

    ``decode`` refuses anything outside the allow-list before any decryption work,
    checks ``exp``/``nbf``/``iat`` with ``leeway`` seconds, and keeps an LRU cache of
    decrypted tokens (``cache_size`` entries, 0 turns it off). Times are checked on
    every hit, so an expired token never comes back from the cache.
    """

    def __init__(
        self,
        secret_key: SecretKey,
        *,
        leeway: int = 10,
        cache_size: int = 4096,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
    ) -> None:
        if leeway < 0:
            raise ValueError("leeway must be >= 0")
        self.keyring = Keyring.coerce(secret_key)
        self.leeway = leeway
        self.max_token_size = max_token_size
        self.cache = TokenCache(cache_size)
        self.local = threading.local()
        # The exact header segment this codec writes for each key: a token carrying one
        # of them needs no header parsing. The first one is the current key's.
        self.headers: dict[str, Any] = {}
        for key in self.keyring.keys:
            header = orjson.dumps({"alg": ALG, "enc": ENC, "kid": key["kid"]}).decode()
            self.headers[jwe.base64url_encode(header)] = key
        self.current_header = orjson.dumps(
            {"alg": ALG, "enc": ENC, "kid": self.keyring.current_kid}).decode()
        self.current_prefix = jwe.base64url_encode(self.current_header) + "."

    def encode(self, claims: dict[str, Any]) -> str:
        """Encrypt ``claims`` (a JSON-able dict) with the newest key."""
        try:
            # Keys that are not strings become strings, as json.dumps (and Starlette) has it.
            plaintext = orjson.dumps(claims, option=orjson.OPT_NON_STR_KEYS)
        except orjson.JSONEncodeError as exc:
            raise TypeError(f"session data must be JSON-serializable: {exc}") from exc
        token = jwe.JWE(plaintext, protected=self.current_header)
        token.add_recipient(self.keyring.current)
        compact: str = token.serialize(compact=True)
        return compact

    def decode(self, token: str, *, now: int | None = None) -> dict[str, Any]:
        """Decrypt and check ``token``; return a fresh claims dict or raise ``InvalidToken``."""
        return self.decode_cached(token, int(time.time()) if now is None else now).to_dict()

    def decode_cached(self, token: str, now: int) -> Decoded:
        """Like :meth:`decode`, but returns the cache's own :class:`Decoded` entry."""
        decoded = self.cache.lookup(token)
        if decoded is None:
            try:
                decoded = Decoded(check_types(orjson.loads(self.decrypt(token))))
            except orjson.JSONDecodeError as exc:
                raise InvalidToken("token payload is not JSON") from exc
            self.cache.store(token, decoded)
        decoded.check_times(now, self.leeway)
        return decoded

    def is_current(self, token: str) -> bool:
        """True when ``token`` was encrypted with the newest key (no re-issue needed)."""
        return token.startswith(self.current_prefix)

    def decrypt(self, token: str) -> bytes:
        """Check the token's shape and header, then let jwcrypto decrypt it."""
        if not isinstance(token, str) or len(token) > self.max_token_size:
            raise InvalidToken("token is too large or not text")
        match = COMPACT.fullmatch(token)
        if match is None:
            raise InvalidToken("token is not a dir/A256GCM compact JWE")
        if not all(is_canonical_b64url(part) for part in match.groups()):
            raise InvalidToken("token is not canonical base64url")
        key = self.headers.get(match.group(1)) or self.key_for_header(match.group(1))
        # One prepared JWE object per thread: building one deep-copies jwcrypto's header
        # registry (most of a naive decrypt's cost). deserialize() resets every piece of
        # per-token state (objects, plaintext, cek, decryptlog) before it reads the token.
        reader: jwe.JWE | None = getattr(self.local, "reader", None)
        if reader is None:
            reader = self.local.reader = jwe.JWE(algs=[ALG, ENC])
        try:
            reader.deserialize(token, key=key)
            plaintext: bytes = reader.plaintext
        except (JWException, ValueError, TypeError) as exc:
            raise InvalidToken("token failed to decrypt") from exc
        finally:
            reader.plaintext = None
            reader.cek = None
            reader.objects = {}
        return plaintext

    def key_for_header(self, segment: str) -> Any:
        """Parse a header written by another encoder; return its key or raise."""
        try:
            header = orjson.loads(b64url_decode(segment))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise InvalidToken("token header is not JSON") from exc
        if type(header) is not dict or not header.keys() <= ALLOWED_HEADER:
            raise InvalidToken("token header has members outside the allow-list")
        if header.get("alg") != ALG or header.get("enc") != ENC:
            raise InvalidToken("token algorithm is not dir/A256GCM")
        kid = header.get("kid")
        key = self.keyring.by_kid.get(kid) if type(kid) is str else None
        if key is None:
            raise UnknownKey("token was encrypted with a key this keyring does not hold")
        return key
