"""The session cookie on the wire: reading (and joining chunks), writing, expiring."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from asgi_jwt_session.errors import SessionTooLarge

__all__ = [
    "CookieRead",
    "CookieWriter",
    "SessionTooLarge",
    "check_attribute",
    "read_cookie_chunks",
    "read_session_cookie",
]

MAX_SET_COOKIE = 4096  # bytes per Set-Cookie line, attributes counted (RFC 6265 §6.1)
DELETED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
MAX_ATTRIBUTE = 1024  # RFC 6265bis caps an attribute value at 1024 bytes

TOKEN_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
BAD_ATTRIBUTE = re.compile(r"[;,\s\x00-\x1f\x7f]")
# Only spaces and tabs surround a cookie (RFC 6265 OWS); str.strip() would also drop
# control and non-ASCII bytes (\x1c-\x1f, \x85, \xa0) and so accept a mangled token.
OWS = " \t"
TOO_MANY = 10**6  # a chunk index no cookie of ours reaches


def check_attribute(name: str, value: str | None) -> None:
    """Refuse a cookie attribute value that could break out of its attribute, or that
    could not fit in a cookie line."""
    if value is None:
        return
    if not value or BAD_ATTRIBUTE.search(value) or not value.isascii():
        raise ValueError(f"invalid cookie {name} {value!r}: ASCII only; no ';', ',', "
                         "spaces or controls")
    if len(value) > MAX_ATTRIBUTE:
        raise ValueError(f"cookie {name} is {len(value)} characters, over {MAX_ATTRIBUTE}")


def chunk_index(cookie_name: str, prefix: str) -> int | None:
    """The ``N`` of a chunk name ``<prefix>N`` (``None`` for any other name)."""
    if not cookie_name.startswith(prefix):
        return None
    index = cookie_name[len(prefix):]
    if not (index.isascii() and index.isdigit()):
        return None
    # int() of thousands of digits raises (and is slow): such a name is no chunk of ours.
    return int(index) if len(index) <= 6 else TOO_MANY


def single_cookie(raw: bytes, needle: bytes, start: int = -1) -> str | None:
    """The value of cookie ``needle`` in one Cookie header, when it is there once, as a
    plain ``name=value`` pair and with no chunk names beside it (the common case, read
    without splitting the header); ``None`` when the full parse must decide. ``start``:
    where ``needle`` first occurs, when the caller found it already."""
    # find(), not "in": a bytes "in" tries the operand as an int first, and pays for
    # the error it raises and drops.
    if start < 0:
        start = raw.find(needle)
    if start < 0:
        return None
    # The pair's start: the header's, or after a ";" and spaces or tabs.
    if start and raw[:start].rstrip(b" \t")[-1:] not in (b"", b";"):
        return None  # inside another cookie's name or value
    equals = start + len(needle)
    if raw[equals:equals + 1] != b"=":
        return None  # "name =value", or a longer name
    end = raw.find(b";", equals)
    if end < 0:
        value = raw[equals + 1:]
    elif raw.find(needle, end) >= 0:
        return None  # there again after its value: a chunk, a duplicate
    else:
        value = raw[equals + 1:end]
    return value.decode("latin-1").strip(OWS)


class CookieRead(NamedTuple):
    """What a request carried of one session cookie.

    ``token``: the value, chunks joined (``None`` when absent or broken); ``carried``:
    the names to expire if the cookie is refused; ``overflow``: how many chunk names
    were ignored, being past the most chunks the cookie may have (``max_chunks``).
    """

    token: str | None
    carried: list[str]
    overflow: int = 0


def read_cookie_chunks(
    headers: Iterable[tuple[bytes, bytes]], name: str, max_chunks: int | None = None
) -> CookieRead:
    """Find the session cookie ``name`` in the raw request headers.

    The token is ``name``, or the chunks ``name.0``, ``name.1``... joined in order; a
    broken set of chunks (one missing) gives no token. As in Starlette's cookie parser,
    the last of duplicate names wins. Chunk names at or past ``max_chunks`` (and
    spellings such as ``name.01``) are ignored and counted in ``overflow``, so whatever
    a request carries, ``carried`` has at most ``max_chunks + 1`` names.
    """
    needle = name.encode("latin-1")
    carrying = [raw for key, raw in headers if key == b"cookie" and raw.find(needle) >= 0]
    if not carrying:
        return CookieRead(None, [])
    if len(carrying) == 1:
        token = single_cookie(carrying[0], needle)
        if token is not None:
            return CookieRead(token or None, [name])
    found: dict[str, str] = {}
    overflow = 0
    prefix = name + "."
    for raw in carrying:
        for pair in raw.decode("latin-1").split(";"):
            cookie_name, sep, value = pair.partition("=")
            if not sep:
                continue
            cookie_name = cookie_name.strip(OWS)
            if cookie_name != name:
                index = chunk_index(cookie_name, prefix)
                if index is None:
                    continue
                if ((max_chunks is not None and index >= max_chunks)
                        or cookie_name != f"{prefix}{index}"):
                    overflow += 1
                    continue
            found[cookie_name] = value.strip(OWS)
    if not found:
        return CookieRead(None, [], overflow)
    names = list(found)
    if name in found:
        return CookieRead(found[name] or None, names, overflow)
    parts = []
    for index in range(len(found)):
        part = found.get(f"{prefix}{index}")
        if part is None:
            return CookieRead(None, names, overflow)
        parts.append(part)
    return CookieRead("".join(parts), names, overflow)


def read_session_cookie(
    headers: Iterable[tuple[bytes, bytes]], name: str
) -> tuple[str | None, list[str]]:
    """Find the session cookie in the raw request headers.

    Returns the token (chunks ``name.0``, ``name.1``... joined in order) and the names of
    every session cookie the request carried, so that all of them can be expired. A
    broken set of chunks (one missing) gives no token. As in Starlette's cookie parser,
    the last of duplicate names wins. See :func:`read_cookie_chunks` to cap the chunks.
    """
    token, carried, _ = read_cookie_chunks(headers, name)
    return token, carried


class CookieWriter:
    """Builds the Set-Cookie lines for one cookie name and one set of attributes."""

    def __init__(
        self,
        name: str,
        *,
        max_age: int | None,
        path: str,
        domain: str | None,
        same_site: Literal["lax", "strict", "none"],
        partitioned: bool = False,
        max_size: int = 12 * 1024,
        chunk_size: int | None = None,
    ) -> None:
        if not TOKEN_NAME.fullmatch(name):
            raise ValueError(f"invalid cookie name {name!r}")
        check_attribute("path", path)
        check_attribute("domain", domain)
        if same_site not in ("lax", "strict", "none"):
            raise ValueError(f"same_site must be 'lax', 'strict' or 'none', not {same_site!r}")
        self.name = name
        self.max_size = max_size
        # None: chunk when the Set-Cookie line would pass 4096 bytes. A number: chunk
        # values longer than that, as Auth.js does (3936 characters).
        self.chunk_size = chunk_size
        flags = f"Path={path}"
        if domain is not None:
            flags += f"; Domain={domain}"
        flags += f"; HttpOnly; SameSite={same_site.capitalize()}"
        if partitioned:
            flags += "; Partitioned"
        self.flags = flags
        self.max_age = f"; Max-Age={max_age}" if max_age is not None else ""

    def chunks_for(self, size: int) -> int:
        """The most chunks a token of ``size`` characters takes with this writer."""
        if self.chunk_size is not None:
            room = self.chunk_size
        else:  # the longest attributes it may write: Secure, a ten-digit Max-Age
            room = MAX_SET_COOKIE - len(
                f"{self.name}.99=; {self.attributes(True)}; Max-Age=9999999999")
        return max(1, math.ceil(size / max(room, 64)))

    def attributes(self, secure: bool) -> str:
        return self.flags + "; Secure" if secure else self.flags

    def set(self, token: str, *, secure: bool, carried: Iterable[str] = (),
            max_age: int | None = None, persistent: bool = True) -> list[str]:
        """Set-Cookie lines that store ``token``, chunked when one line would pass 4096
        bytes, plus deletions for chunks the request carried that are no longer used.
        ``persistent=False`` leaves ``Max-Age`` out: the browser forgets the cookie when
        it closes."""
        if len(token) > self.max_size:
            raise SessionTooLarge(
                f"session cookie would be {len(token)} bytes, over the budget of "
                f"{self.max_size}: keep less in the session"
            )
        # A token that expires sooner than max_age (the absolute lifetime) says so.
        lifetime = self.max_age if max_age is None or not self.max_age else f"; Max-Age={max_age}"
        if not persistent:
            lifetime = ""
        attributes = self.attributes(secure) + lifetime
        single = f"{self.name}={token}; {attributes}"
        fits = (len(single) <= MAX_SET_COOKIE if self.chunk_size is None
                else len(token) <= self.chunk_size)
        if fits:
            lines, names = [single], {self.name}
        else:
            lines, names = [], set()
            start = 0
            while start < len(token):
                chunk_name = f"{self.name}.{len(lines)}"
                room = self.chunk_size or MAX_SET_COOKIE - len(f"{chunk_name}=; {attributes}")
                if room < 64:
                    raise SessionTooLarge("the cookie's attributes leave no room for its value")
                lines.append(f"{chunk_name}={token[start:start + room]}; {attributes}")
                names.add(chunk_name)
                start += room
        lines.extend(self.delete(name, secure=secure) for name in carried if name not in names)
        return lines

    def delete(self, name: str, *, secure: bool) -> str:
        """A Set-Cookie line that expires cookie ``name`` now."""
        return f"{name}=; {self.attributes(secure)}; {DELETED}"

    def delete_all(self, carried: Iterable[str], *, secure: bool) -> list[str]:
        return [self.delete(name, secure=secure) for name in carried]
