"""The fast Cookie-header scan answers exactly as the full parse, on any header."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_jwt_session.codec import Codec
from asgi_jwt_session.cookies import CookieRead, read_cookie_chunks, single_cookie
from asgi_jwt_session.front import FrontCache
from asgi_jwt_session.tokens import TokenFormat

NAME = "session"
pieces = st.sampled_from([
    "session", "session.0", "session.1", "session.01", "xsession", "session2", "sess",
    "other", "a", " ", "\t", ";", "=", "; ", "session=", "tok", "en", ".", "\x1c", "\xa0",
    "\n", "\r", "session =", " session=", ";session=",
])
headers = st.lists(pieces, max_size=14).map("".join)


def full_parse(raw: bytes) -> CookieRead:
    # Two headers with the cookie force the full parse; the second one is empty of it.
    return read_cookie_chunks([(b"cookie", raw), (b"cookie", NAME.encode())], NAME, 4)


@settings(max_examples=3000, deadline=None)
@given(headers)
def test_fast_scan_agrees_with_the_full_parse(header: str) -> None:
    raw = header.encode("latin-1")
    assert read_cookie_chunks([(b"cookie", raw)], NAME, 4) == full_parse(raw)


def test_the_fast_scan_is_taken() -> None:
    assert single_cookie(b"a=1; session=tok; b=2", NAME.encode()) == "tok"
    assert single_cookie(b"session.0=a; session.1=b", NAME.encode()) is None


def test_common_headers() -> None:
    def read(raw: bytes) -> CookieRead:
        return read_cookie_chunks([(b"cookie", raw)], NAME, 4)

    assert read(b"a=1; session=tok; b=2") == CookieRead("tok", [NAME])
    assert read(b"session=tok") == CookieRead("tok", [NAME])
    assert read(b"xsession=no; session=tok") == CookieRead("tok", [NAME])
    assert read(b"xsession=no") == CookieRead(None, [])
    assert read(b"a=session=no") == CookieRead(None, [])
    assert read(b"session=a; session=b") == CookieRead("b", [NAME])  # the last wins
    assert read(b"session.0=ab; session.1=cd") == CookieRead("abcd", ["session.0",
                                                                     "session.1"])
    assert read(b"session=") == CookieRead(None, [NAME])


CODEC = Codec(TokenFormat().cookies("cookie-scan-" + "Zq4x" * 8 + "-r9Tw", NAME)[0][1])
FRONT = FrontCache([("__Secure-session", CODEC), (NAME, CODEC)],
                   {"__Secure-session": 4, NAME: 4}, 0)
two_names = st.lists(st.one_of(pieces, st.sampled_from(
    ["__Secure-session", "__Secure-session=", "__Secure-session.0=", "x"])),
    max_size=14).map("".join)


@settings(max_examples=3000, deadline=None)
@given(two_names)
def test_one_header_is_read_as_any_headers_are(header: str) -> None:
    """The front cache's read of a request's one Cookie header (``scan_one``) finds
    the same cookie as its read of any headers (``scan``), which the full parse backs."""
    raw = header.encode("latin-1")
    one, any_headers = FRONT.scan_one(raw), FRONT.scan([(b"cookie", raw)])
    assert (one.name, one.read) == (any_headers.name, any_headers.read)
    if one is not FRONT.no_cookie:
        assert one.read == read_cookie_chunks([(b"cookie", raw)], one.name, 4)
