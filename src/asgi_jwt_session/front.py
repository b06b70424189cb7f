"""The front cache: a request's raw Cookie header to the session cookie it carries.

A browser sends the same Cookie header request after request, so the header's bytes
look up what was read from it (and, once its token proved valid, until when that token
needs no other check): the warm request reads no cookie and decodes no token.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from asgi_jwt_session.codec import Codec, Decoded, LRUCache
from asgi_jwt_session.cookies import CookieRead, read_cookie_chunks, single_cookie

__all__ = ["FRONT_MAX_BYTES", "FRONT_SIZE", "FrontCache", "Seen"]

FRONT_SIZE = 1024  # Cookie headers remembered, at most FRONT_MAX_BYTES each
FRONT_MAX_BYTES = 8192
NO_COOKIE = CookieRead(None, [])


class Seen:
    """A Cookie header's session cookie as the front cache keeps it: the cookie's
    ``name``, ``codec`` and what was ``read``, and once its token proved valid, the
    token's ``decoded`` entry with the seconds ``quiet_from <= now < quiet_until`` in
    which a request carrying it needs no other check (the token valid, written with
    the newest key, not due for renewal, within the session's absolute lifetime),
    floats, as ``time.time()`` is (an int compared with a float costs a conversion).
    ``lifetime`` is the session's, as the middleware derives it from the token."""

    __slots__ = ("codec", "decoded", "lifetime", "name", "quiet_from", "quiet_until", "read")

    def __init__(self, name: str, codec: Codec, read: CookieRead) -> None:
        self.name = name
        self.codec = codec
        self.read = read
        self.decoded: Decoded | None = None
        self.quiet_from = self.quiet_until = 0.0
        self.lifetime: int | None = None


class FrontCache(LRUCache[bytes, Seen]):
    """Raw Cookie headers (of at most ``FRONT_MAX_BYTES``) to what they hold of the
    session ``cookies`` (``(name, codec)``, in the order they are looked for), at most
    ``size`` of them, the least recently used dropped first. ``max_chunks``: the most
    chunks each cookie is read in."""

    def __init__(self, cookies: Sequence[tuple[str, Codec]], max_chunks: Mapping[str, int],
                 size: int) -> None:
        super().__init__(size)
        self.cookies = [(name, codec, name.encode("latin-1")) for name, codec in cookies]
        self.max_chunks = max_chunks
        name, codec = cookies[-1]
        self.no_cookie = Seen(name, codec, NO_COOKIE)  # never decoded: no token

    def read(self, headers: list[tuple[bytes, bytes]]) -> Seen:
        """The first session cookie a request's ``headers`` carry. A request with one
        Cookie header is looked up by that header's bytes first."""
        cookie = None
        for key, value in headers:
            if key == b"cookie":
                if cookie is not None:  # several Cookie headers: never kept in front
                    return self.scan(headers)
                cookie = value
        if cookie is None:
            return self.no_cookie
        hit = self.get(cookie)  # LRUCache.lookup, inline: the hot path
        if hit is not None:
            try:  # noqa: SIM105
                self.move_to_end(cookie)
            except KeyError:  # evicted by another thread meanwhile
                pass
            return hit
        found = self.scan_one(cookie)
        if len(cookie) <= FRONT_MAX_BYTES:
            self.store(cookie, found)
        return found

    def scan_one(self, cookie: bytes) -> Seen:
        """Read the session cookie from the one Cookie header a request has (no cache):
        a plain ``name=value`` by the fast scan, anything else by the full parse."""
        for name, codec, needle in self.cookies:
            start = cookie.find(needle)
            if start >= 0:
                value = single_cookie(cookie, needle, start)
                if value is None:  # chunks, a duplicate, the name inside another cookie
                    return self.scan(((b"cookie", cookie),))
                # What a request carried of cookie ``name`` sent once, whole (the
                # NamedTuple by tuple.__new__, without its Python-level __new__).
                return Seen(name, codec, tuple.__new__(CookieRead, (value or None, [name], 0)))
        return self.no_cookie

    def scan(self, headers: Iterable[tuple[bytes, bytes]]) -> Seen:
        """Read the session cookie from ``headers`` by the full parse (no cache)."""
        for name, codec, _ in self.cookies:
            read = read_cookie_chunks(headers, name, self.max_chunks[name])
            if read.carried or read.overflow:
                return Seen(name, codec, read)
        return self.no_cookie

