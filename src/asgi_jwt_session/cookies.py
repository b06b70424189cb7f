"""The session cookie on the wire: reading (and joining chunks), writing, expiring."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from asgi_jwt_session.errors import SessionTooLarge

__all__ = ["CookieWriter", "SessionTooLarge", "check_attribute", "read_session_cookie"]

MAX_SET_COOKIE = 4096  # bytes per Set-Cookie line, attributes counted (RFC 6265 §6.1)
DELETED = "Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
MAX_ATTRIBUTE = 1024  # RFC 6265bis caps an attribute value at 1024 bytes

TOKEN_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
BAD_ATTRIBUTE = re.compile(r"[;,\s\x00-\x1f\x7f]")
# Only spaces and tabs surround a cookie (RFC 6265 OWS); str.strip() would also drop
# control and non-ASCII bytes (\x1c-\x1f, \x85, \xa0) and so accept a mangled token.
OWS = " \t"


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


def is_chunk_name(cookie_name: str, prefix: str) -> bool:
    index = cookie_name[len(prefix):]
    return cookie_name.startswith(prefix) and index.isascii() and index.isdigit()


def read_session_cookie(
    headers: Iterable[tuple[bytes, bytes]], name: str
) -> tuple[str | None, list[str]]:
    """Find the session cookie in the raw request headers.

    Returns the token (chunks ``name.0``, ``name.1``... joined in order) and the names of
    every session cookie the request carried, so that all of them can be expired. A
    broken set of chunks (one missing) gives no token. As in Starlette's cookie parser,
    the last of duplicate names wins.
    """
    found: dict[str, str] = {}
    prefix = name + "."
    needle = name.encode("latin-1")
    for key, raw in headers:
        if key != b"cookie" or needle not in raw:
            continue
        for pair in raw.decode("latin-1").split(";"):
            cookie_name, sep, value = pair.partition("=")
            cookie_name = cookie_name.strip(OWS)
            if sep and (cookie_name == name or is_chunk_name(cookie_name, prefix)):
                found[cookie_name] = value.strip(OWS)
    if not found:
        return None, []
    names = list(found)
    if name in found:
        return found[name] or None, names
    parts = []
    for index in range(len(found)):
        part = found.get(f"{prefix}{index}")
        if part is None:
            return None, names
        parts.append(part)
    return "".join(parts), names


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

    def attributes(self, secure: bool) -> str:
        return self.flags + "; Secure" if secure else self.flags

    def set(self, token: str, *, secure: bool, carried: Iterable[str] = (),
            max_age: int | None = None) -> list[str]:
        """Set-Cookie lines that store ``token``, chunked when one line would pass 4096
        bytes, plus deletions for chunks the request carried that are no longer used."""
        if len(token) > self.max_size:
            raise SessionTooLarge(
                f"session cookie would be {len(token)} bytes, over the budget of "
                f"{self.max_size}: keep less in the session"
            )
        # A token that expires sooner than max_age (the absolute lifetime) says so.
        lifetime = self.max_age if max_age is None or not self.max_age else f"; Max-Age={max_age}"
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
