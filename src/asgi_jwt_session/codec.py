"""The one decode pipeline every token format goes through.

A *format* (this package's :class:`~asgi_jwt_session.tokens.TokenFormat`, Auth.js's
:class:`~asgi_jwt_session.authjs.AuthJSFormat`) is only a wire codec: which cookie
names it uses, how it chunks, how it encrypts and decrypts. Everything else is here
and shared: the size cap, the compact-JWE shape, the canonical base64url rule, the
header allow-list (all checked before any decryption work), the claim types, the time
check and the decoded-token cache.
"""

from __future__ import annotations

import binascii
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar

import orjson

from asgi_jwt_session.base64url import (
    CANONICAL_TAIL_BYTES,
    b64url_decode,
    b64url_encode,
    is_canonical_b64url,
)
from asgi_jwt_session.claims import (
    ACTOR_CLAIM_TYPES,
    CLAIM_TYPES,
    RESERVED_CLAIMS,
    check_types,
    split_claims,
)
from asgi_jwt_session.errors import ExpiredToken, InvalidToken, UnknownKey

if TYPE_CHECKING:
    from asgi_jwt_session.keys import SecretKey

__all__ = [
    "ACTOR_CLAIM_TYPES",
    "CLAIM_TYPES",
    "RESERVED_CLAIMS",
    "Codec",
    "Compact",
    "Decoded",
    "LRUCache",
    "SessionFormat",
    "TokenCache",
    "WireCodec",
    "b64url_decode",
    "b64url_encode",
    "check_types",
    "compact_json",
    "is_canonical_b64url",
]

K = TypeVar("K")
V = TypeVar("V")

DEFAULT_MAX_TOKEN_SIZE = 12 * 1024
# Decoded tokens kept per cookie name. Chosen from benchmarks/bench_cache.py: with 10,000
# Zipf-active users over 8 workers it hits 0.882 of requests (16,384: 0.886, 4,096:
# 0.836), at ~2.1 KB a typical entry (17 MiB full) and at most ~23 KB for a 12 KiB token.
DEFAULT_CACHE_SIZE = 8192
# Header members a token may carry; anything else (zip, crit, jku, jwk...) is refused.
ALLOWED_HEADER = frozenset({"alg", "enc", "kid", "typ", "cty"})
# Per content encryption: base64url lengths of the IV and the tag in a compact token.
ENC_SHAPES = {"A256GCM": (16, 22), "A256CBC-HS512": (22, 43)}
MAX_HEADER_SEGMENT = 1024
# base64url to standard base64, for binascii's strict decode; and the padding each
# length needs (a length of 1 mod 4 gets one "=", which binascii refuses: no base64 has
# that length). "+", "/" and "=" would pass as standard base64, but unpadded base64url
# has none: they become "!", which the strict decode refuses.
STANDARD = bytes.maketrans(b"-_+/=", b"+/!!!")
PADDING = (b"", b"=", b"==", b"=")
NOT_COMPACT = "token is not a compact JWE (five base64url parts)"


class Compact(NamedTuple):
    """A token that passed the shared checks: the token, its header segment and parsed
    header, and its IV, ciphertext and tag already decoded (a wire that checks its own
    shape, see :class:`WireCodec`, puts what it decoded there)."""

    token: str
    header_segment: str
    header: Mapping[str, Any]
    iv: bytes
    ciphertext: bytes
    tag: bytes


def parse_header(segment: str, encs: frozenset[str]) -> dict[str, Any]:
    """The protected header, refused unless it is canonical base64url of a JSON object
    that is ``dir`` with one of ``encs`` and holds nothing outside the allow-list."""
    if not is_canonical_b64url(segment):
        raise InvalidToken("token is not canonical base64url")
    try:
        header = orjson.loads(strict_b64url(segment.encode("ascii").translate(STANDARD)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidToken("token header is not JSON") from exc
    if type(header) is not dict:
        raise InvalidToken("token header is not a JSON object")
    extra = header.keys() - ALLOWED_HEADER
    if extra:
        raise InvalidToken(f"token header has members outside the allow-list: {sorted(extra)}")
    alg, enc = header.get("alg"), header.get("enc")
    if alg != "dir" or type(enc) is not str or enc not in encs:
        message = (f"token algorithm alg={alg!r} enc={enc!r} is not allowed "
                   f"(only dir with {', '.join(sorted(encs))})")
        if alg == "dir" and enc == "A256CBC-HS512":
            message += ("; it looks like an Auth.js session token: use "
                        "format=AuthJSFormat() from asgi_jwt_session.authjs")
        raise InvalidToken(message)
    if "kid" in header and type(header["kid"]) is not str:
        raise UnknownKey("token kid is not a string")
    return header


def strict_b64url(part: bytes) -> bytes:
    """Decode one segment already translated to the standard alphabet (``+/``), refusing
    any character outside it and any length base64 cannot have (``binascii.Error``, a
    ``ValueError``); the caller checks the canonical spelling."""
    return binascii.a2b_base64(part + PADDING[len(part) & 3], strict_mode=True)


def compact_json(value: Any) -> bytes:
    """``value`` as JSON in a bytes object of exactly its length: orjson's own result
    keeps the buffer it grew (~128 KiB for a 9 KB document), and a cache holds these."""
    return bytes(memoryview(orjson.dumps(value)))


class Decoded:
    """A decrypted, type-checked token as the cache keeps it.

    ``claims`` holds the registered claims (``sub``, ``role``, times...) and must not
    be changed; the user's other claims (``extra``) and the free-form session dict
    (``data``) stay JSON, so each request parses its own copy, no request can change
    what the next one reads, and an entry costs little more than the token's size.
    ``memo`` is for the session layer to keep what it derives from the claims (it is
    immutable there). The ``claims`` dict given is taken over, not copied: the caller
    must not use it afterwards.
    """

    __slots__ = ("claims", "data", "exp", "extra", "fresh", "iat", "memo", "nbf")

    def __init__(self, claims: dict[str, Any]) -> None:
        # The types are checked on the way, in the same pass that splits the claims.
        registered, extra = split_claims(claims)
        data = registered.pop("data", None)
        self.data = compact_json(data) if data else None
        # The parsed data, for the first session read from this entry to take instead
        # of parsing its JSON again (list.pop: only one of several threads gets it).
        self.fresh: list[dict[str, Any]] | None = [data] if data else None
        self.extra = compact_json(extra) if extra else None
        self.claims = registered
        self.exp: int = registered["exp"]
        self.iat: int | None = registered.get("iat")
        self.nbf: int | None = registered.get("nbf")
        self.memo: Any = None

    def check_times(self, now: int, leeway: int) -> None:
        """Refuse a token past ``exp`` or before ``nbf``/``iat``, ``leeway`` seconds
        either way (``exp == now - leeway`` still passes)."""
        if now > self.exp + leeway:
            raise ExpiredToken("token has expired")
        if self.nbf is not None and now + leeway < self.nbf:
            raise InvalidToken("token is not valid yet ('nbf' in the future)")
        if self.iat is not None and now + leeway < self.iat:
            raise InvalidToken("token was issued in the future ('iat')")

    def to_dict(self) -> dict[str, Any]:
        """A fresh dict of all the claims, ``data`` included, sharing nothing with the cache."""
        claims: dict[str, Any] = orjson.loads(orjson.dumps(self.claims))
        if self.extra is not None:
            claims.update(orjson.loads(self.extra))
        if self.data is not None:
            claims["data"] = orjson.loads(self.data)
        return claims


class WireCodec(Protocol):
    """One cookie's wire codec: what a format does for one cookie name.

    ``encs`` are the content encryptions it reads; ``headers`` maps the exact header
    segments it writes to their parsed headers, so the pipeline need not parse them.
    """

    @property
    def encs(self) -> frozenset[str]: ...

    @property
    def headers(self) -> Mapping[str, Mapping[str, Any]]: ...

    def decrypt(self, compact: Compact) -> bytes:
        """The plaintext of a token that passed the shared checks; raise
        :class:`InvalidToken` (or :class:`UnknownKey`) otherwise."""

    def claims(self, claims: dict[str, Any]) -> dict[str, Any]:
        """The wire's claims in this package's names (``role``, integer times)."""

    def encode(self, claims: dict[str, Any]) -> str:
        """Encrypt claims (this package's names) into a token."""

    def is_current(self, token: str) -> bool:
        """True when ``token`` was encrypted with the newest key."""

    # Optional: ``parse(token) -> Compact`` for tokens that are not compact JWEs (Better
    # Auth's signed cookie caches): the wire's own strict shape checks, before any
    # cryptographic work, in place of the JWE ones (the size cap still comes first).


class SessionFormat(Protocol):
    """A token format the middleware reads the session cookie with.

    ``writable``: whether the middleware writes the cookie (Auth.js's may be read-only).
    ``chunk_size``: ``None`` chunks when a Set-Cookie line would pass 4096 bytes; a
    number chunks cookie values longer than that many characters.

    Two optional attributes, for a cookie another program writes too (Auth.js's):
    ``max_token_size``, the longest token read when it is longer than the middleware's
    ``max_cookie_size`` (its write budget); and ``owns_cookie = False``, so that a
    cookie too large to read is left as it is rather than expired, and a re-issued
    token keeps the lifetime (``exp - iat``) of the token it replaces.
    """

    @property
    def writable(self) -> bool: ...

    @property
    def chunk_size(self) -> int | None: ...

    def cookies(self, secret_key: SecretKey, session_cookie: str
                ) -> Sequence[tuple[str, WireCodec]]:
        """The cookie names the session may live in, with each one's codec: the https
        name first and the http name last (one entry when they are the same)."""


class LRUCache(OrderedDict[K, V]):
    """A bounded LRU map: :meth:`store` drops the least recently used past ``size``
    entries (0: keeps nothing); a reader marks what it found used with ``move_to_end``
    (inline on the hot paths). Safe with threads: an entry another thread evicted
    meanwhile is simply gone (``move_to_end`` raises ``KeyError``, to ignore)."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError("cache_size must be >= 0")
        super().__init__()
        self.size = size

    def store(self, key: K, value: V) -> None:
        if self.size:
            self[key] = value
            if len(self) > self.size:
                try:  # noqa: SIM105
                    self.popitem(last=False)
                except KeyError:
                    pass


# The exact token string to its :class:`Decoded` entry.
TokenCache = LRUCache[str, Decoded]


class Codec:
    """Tokens of one cookie to :class:`Decoded` entries and back, for any format.

    ``decode_cached`` refuses a token over ``max_token_size`` characters, not in the
    compact shape, not canonical base64url or with a header outside the allow-list
    before the wire codec decrypts it; then checks the claim types, and on every call
    (cache hit or not) ``exp``/``nbf``/``iat`` with ``leeway`` seconds. Decrypted
    tokens of at most ``max_cached_size`` characters (default: ``max_token_size``) are
    kept in an LRU cache of ``cache_size`` entries (0 turns it off). An entry holds
    under twice its token's size (the token itself is the key) plus about 1.5 KiB, so
    the cache holds at most ``cache_size * (2 * max_cached_size + 1.5 KiB)``.
    """

    def __init__(
        self,
        wire: WireCodec,
        *,
        leeway: int = 10,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_token_size: int = DEFAULT_MAX_TOKEN_SIZE,
        max_cached_size: int | None = None,
    ) -> None:
        if leeway < 0:
            raise ValueError("leeway must be >= 0")
        self.wire = wire
        self.leeway = leeway
        self.max_token_size = max_token_size
        self.max_cached_size = max_token_size if max_cached_size is None else max_cached_size
        self.cache = TokenCache(cache_size)
        # A wire whose tokens are not compact JWEs checks their shape itself.
        self.parse: Callable[[str], Compact] | None = getattr(wire, "parse", None)
        # What maps the wire's claims to this package's names (None: they are already).
        self.wire_claims = None if getattr(wire, "claims_as_they_are", False) else wire.claims
        # True when a token was encrypted with the newest key (no re-issue needed).
        self.is_current: Callable[[str], bool] = wire.is_current

    def encode(self, claims: dict[str, Any]) -> str:
        """Encrypt ``claims`` (a JSON-able dict) with the newest key."""
        return self.wire.encode(claims)


    def decode(self, token: str, *, now: int | None = None) -> dict[str, Any]:
        """Decrypt and check ``token``; return a fresh claims dict or raise ``InvalidToken``."""
        return self.decode_cached(token, int(time.time()) if now is None else now).to_dict()

    def decode_cached(self, token: str, now: int) -> Decoded:
        """Like :meth:`decode`, but returns the cache's own :class:`Decoded` entry."""
        cache = self.cache
        decoded = cache.get(token)  # LRUCache.lookup, inline: every request's path
        if decoded is not None:
            try:  # noqa: SIM105
                cache.move_to_end(token)
            except KeyError:  # evicted by another thread meanwhile
                pass
        else:
            plaintext = self.wire.decrypt(self.check(token))
            try:
                claims = orjson.loads(plaintext)
            except orjson.JSONDecodeError as exc:
                raise InvalidToken("token payload is not JSON") from exc
            if type(claims) is not dict:
                raise InvalidToken("token payload is not a JSON object")
            wire_claims = self.wire_claims
            decoded = Decoded(claims if wire_claims is None else wire_claims(claims))
            if len(token) <= self.max_cached_size:
                cache.store(token, decoded)
        decoded.check_times(now, self.leeway)
        return decoded

    def check(self, token: str) -> Compact:
        """The shared checks, before any decryption work: size, the compact shape (five
        segments, the second empty, strict base64url, canonical spelling), the header
        allow-list, the IV and tag sizes of its ``enc``. The segments are decoded here,
        once."""
        if type(token) is not str or len(token) > self.max_token_size:
            raise InvalidToken("token is too large or not text")
        if self.parse is not None:  # a wire whose tokens are not compact JWEs
            return self.parse(token)
        if not token.isascii():
            raise InvalidToken(NOT_COMPACT)
        parts = token.encode("ascii").translate(STANDARD).split(b".")
        if len(parts) != 5:
            raise InvalidToken(NOT_COMPACT)
        header_part, key, iv, ciphertext, tag = parts
        if not (1 < len(header_part) <= MAX_HEADER_SEGMENT and iv and ciphertext and tag):
            raise InvalidToken(NOT_COMPACT)
        if key:
            raise InvalidToken("token has an encrypted key, but alg 'dir' has none")
        header_segment = token[:len(header_part)]
        wire = self.wire
        # A header this wire writes is matched exactly (so it is canonical already).
        header = wire.headers.get(header_segment) or parse_header(header_segment, wire.encs)
        iv_size, tag_size = ENC_SHAPES[header["enc"]]
        if len(iv) != iv_size or len(tag) != tag_size:
            raise InvalidToken(f"token is not a dir/{header['enc']} compact JWE (IV or tag size)")
        # The canonical spelling: a last character that leaves no bits over. The IV and
        # the tag have their enc's sizes (checked above), of which none is 1 mod 4.
        tail = CANONICAL_TAIL_BYTES
        remainder = len(ciphertext) & 3
        if ((remainder and (remainder == 1 or ciphertext[-1] not in tail[remainder]))
                or (iv_size & 3 and iv[-1] not in tail[iv_size & 3])
                or (tag_size & 3 and tag[-1] not in tail[tag_size & 3])):
            raise InvalidToken("token is not canonical base64url")
        a2b = binascii.a2b_base64  # strict_b64url, inline: the cold path
        try:
            decoded = (a2b(iv + PADDING[len(iv) & 3], strict_mode=True),
                       a2b(ciphertext + PADDING[len(ciphertext) & 3], strict_mode=True),
                       a2b(tag + PADDING[len(tag) & 3], strict_mode=True))
        except binascii.Error as exc:  # a character outside the alphabet, misplaced "="
            raise InvalidToken(NOT_COMPACT) from exc
        # tuple.__new__: the NamedTuple without its Python-level __new__ (the cold path).
        return tuple.__new__(Compact, (token, header_segment, header, *decoded))
