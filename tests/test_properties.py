"""Properties (hypothesis): JSON-able sessions round-trip unchanged; no bad input raises."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import InvalidToken, JWTSessionMiddleware, Session
from asgi_jwt_session.codec import RESERVED_CLAIMS, b64url_decode, b64url_encode
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.tokens import TokenCodec
from tests.asgi import Response, asgi_get
from tests.conftest import SECRET

# `make test-fast` loads the "fast" profile (conftest): a tenth of the examples.
SCALE = settings.default.max_examples / 100
FAST = settings(max_examples=int(300 * SCALE), deadline=None)
SLOW = settings(max_examples=int(250 * SCALE), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# JSON as orjson (and I-JSON) has it: 64-bit integers, finite floats, no lone surrogates.
json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
sessions = st.dictionaries(st.text(max_size=12), json_values, max_size=6)
CODEC = TokenCodec(SECRET)


def same(got: Any, expected: Any) -> None:
    """Equal, with the same types (1, 1.0 and True differ), the same key order, -0.0 kept."""
    assert got == expected
    assert repr(got) == repr(expected)


# -- round trips --------------------------------------------------------------------------------


@FAST
@given(data=sessions)
def test_session_data_round_trips_through_the_codec(data: dict[str, Any]) -> None:
    now = int(time.time())
    session = Session(data)
    token = CODEC.encode(session.to_claims(now, now + 60))
    for _ in range(2):  # a cold decode, then a cache hit
        same(dict(Session.from_decoded(CODEC.decode_cached(token, now))), data)
        same(CODEC.decode(token, now=now).get("data", {}), data)


@FAST
@given(
    user_id=st.text(min_size=1, max_size=20),
    role=st.text(min_size=1, max_size=10),
    extra=st.dictionaries(
        # login() takes user_id, version and remember itself: they cannot be claim names.
        st.text(max_size=10).filter(
            lambda name: name not in RESERVED_CLAIMS | {"user_id", "version", "remember"}),
        json_values, max_size=4),
    data=sessions,
)
def test_signed_in_session_round_trips_through_the_codec(
    user_id: str, role: str, extra: dict[str, Any], data: dict[str, Any]
) -> None:
    now = int(time.time())
    session = Session(data)
    session.login(user_id, role, version=3, **extra)
    token = CODEC.encode(session.to_claims(now, now + 60))
    back = Session.from_decoded(CODEC.decode_cached(token, now))
    assert back.user is not None
    assert (back.user.id, back.user.role, back.version) == (user_id, role, 3)
    same(dict(back.user.claims), extra)
    same(dict(back), data)
    assert back.jti == session.jti


async def write(request: Request) -> JSONResponse:
    request.session.update(request.scope["test.in"])
    return JSONResponse({})


async def read(request: Request) -> JSONResponse:
    request.scope["test.out"].append(dict(request.session))
    return JSONResponse({"signed_in": request.session.user is not None})


APP = JWTSessionMiddleware(
    Starlette(routes=[Route("/write", write), Route("/read", read)],
              exception_handlers=exception_handlers), SECRET)


async def call(path: str, headers: list[tuple[bytes, bytes]], **extra: Any) -> Response:
    return await asgi_get(APP, path, headers, **extra)


@SLOW
@given(data=sessions)
def test_session_data_round_trips_through_the_middleware(data: dict[str, Any]) -> None:
    async def main() -> list[Any]:
        written = await call("/write", [], **{"test.in": data})
        assert written.status == 200
        assert bool(written.set_cookies) == bool(data)  # an empty session sets no cookie
        pairs = "; ".join(line.split(";")[0] for line in written.set_cookies)
        out: list[Any] = []
        read = await call("/read", [(b"cookie", pairs.encode())], **{"test.out": out})
        assert (read.status, read.set_cookies) == (200, [])  # read back as is, nothing rewritten
        return out

    out = anyio.run(main)
    assert len(out) == 1
    same(out[0], data)


# -- bad input never raises -----------------------------------------------------------------------

EMPTY_BODY = {"signed_in": False}
NOW = int(time.time())
TOKEN = CODEC.encode({"sub": "u1", "role": "ADMIN", "jti": "j", "iat": NOW,
                      "exp": NOW + 10 * 365 * 86400, "auth_time": NOW, "data": {"a": 1}})


def read_as_no_session(headers: list[bytes]) -> None:
    """The request reads as no session: a 200, nothing but deletions, no exception."""
    async def main() -> tuple[Response, list[Any]]:
        out: list[Any] = []
        response = await call(
            "/read", [(b"cookie", header) for header in headers], **{"test.out": out})
        return response, out

    response, out = anyio.run(main)
    assert (response.status, response.json(), out) == (200, EMPTY_BODY, [{}])
    for line in response.set_cookies:
        assert "=;" in line and "Max-Age=0" in line, line


cookie_names = st.sampled_from(
    ["session", "session.0", "session.1", "session.2", "session.00", "session.-1",
     "session.x", "Session", " session", "session\x00", "sess", "other"]
)
cookie_values = (
    st.binary(max_size=60)
    | st.text(max_size=60).map(lambda text: text.encode("utf-8"))
    | st.sampled_from([TOKEN[:40], TOKEN.split(".")[0], "..", "A" * 300]).map(str.encode)
)
separators = st.sampled_from([b"; ", b";", b" ;", b";;", b"\t;", b"=", b"; =", b""])


@st.composite
def cookie_headers(draw: st.DrawFn) -> list[bytes]:
    headers = []
    for _ in range(draw(st.integers(1, 3))):
        pieces = []
        for _ in range(draw(st.integers(0, 5))):
            pieces.append(draw(cookie_names).encode() + b"=" + draw(cookie_values))
            pieces.append(draw(separators))
        headers.append(b"".join(pieces))
    return headers


@SLOW
@given(headers=st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_arbitrary_cookie_bytes(headers: list[bytes]) -> None:
    read_as_no_session(headers)


@SLOW
@given(headers=cookie_headers())
def test_arbitrary_session_cookies(headers: list[bytes]) -> None:
    read_as_no_session(headers)


@st.composite
def mangled_tokens(draw: st.DrawFn) -> str:
    """The valid token, cut, extended, spliced or with one character replaced."""
    index = draw(st.integers(0, len(TOKEN)))
    kind = draw(st.sampled_from(["cut", "insert", "replace", "tail"]))
    text = draw(st.text(min_size=1, max_size=8))
    if kind == "cut":
        mangled = TOKEN[:index] + TOKEN[index + draw(st.integers(1, 40)):]
    elif kind == "insert":
        mangled = TOKEN[:index] + text + TOKEN[index:]
    elif kind == "replace":
        mangled = TOKEN[:index] + text + TOKEN[index + 1:]
    else:
        mangled = TOKEN[:index]
    assume(TOKEN not in mangled)  # a whole valid token may well be read, as it should
    return mangled


@SLOW
@given(token=mangled_tokens())
def test_mangled_tokens_through_the_middleware(token: str) -> None:
    read_as_no_session([b"session=" + token.encode("utf-8")])


@FAST
@given(token=mangled_tokens())
def test_mangled_tokens_refused_by_the_codec(token: str) -> None:
    with pytest.raises(InvalidToken):
        CODEC.decode(token)


@FAST
@given(data=st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    parts = TOKEN.split(".")
    index = data.draw(st.sampled_from([0, 2, 3, 4]), label="part")
    raw = bytearray(b64url_decode(parts[index]))
    raw[data.draw(st.integers(0, len(raw) - 1), label="byte")] ^= 1 << data.draw(
        st.integers(0, 7), label="bit")
    parts[index] = b64url_encode(bytes(raw))
    with pytest.raises(InvalidToken):
        CODEC.decode(".".join(parts))


@SLOW
@given(part=st.sampled_from([0, 2, 3, 4]), byte=st.integers(0, 200), bit=st.integers(0, 7))
def test_any_flipped_bit_through_the_middleware(part: int, byte: int, bit: int) -> None:
    parts = TOKEN.split(".")
    raw = bytearray(b64url_decode(parts[part]))
    raw[byte % len(raw)] ^= 1 << bit
    parts[part] = b64url_encode(bytes(raw))
    read_as_no_session([f"session={'.'.join(parts)}".encode()])


def test_the_valid_token_is_read() -> None:
    """The control for the properties above: the unmangled token signs the user in."""
    async def main() -> Response:
        return await call("/read", [(b"cookie", f"session={TOKEN}".encode())],
                          **{"test.out": []})

    assert anyio.run(main).json() == {"signed_in": True}
