"""Hostile input and resources (issue 11, items 9-12 and 15), this package's own format
and what every format shares: time claims that are no dates, the decoded-token cache's
memory, a flood of chunk names, a session the writer cannot re-issue, and a cookie of
the other format.

Raw ASGI calls (tests/asgi.py) where the exact Cookie header or the exact response
header bytes matter."""

from __future__ import annotations

import gc
import logging
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, SessionTooLarge
from asgi_jwt_session.authjs import AuthJSCodec, AuthJSFormat
from asgi_jwt_session.codec import Codec
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.session import Session, get_session
from asgi_jwt_session.tokens import TokenCodec
from tests.asgi import Response, asgi_get
from tests.conftest import SECRET, Users

pytestmark = pytest.mark.anyio

DAY = 24 * 3600
MAX_TIME = 253402300799  # 9999-12-31T23:59:59Z
AUTHJS_COOKIE = "authjs.session-token"


async def expires(request: Request) -> JSONResponse:
    """What the app sees: the user, and ``session.expires`` (never raising)."""
    session = get_session(request)
    when = session.expires
    return JSONResponse({"user": session.user.id if session.user else None,
                         "expires": when.isoformat() if when else None})


async def grow(request: Request) -> JSONResponse:
    request.session["more"] = "m" * int(request.query_params["size"])
    return JSONResponse({})


def app_with(**options: Any) -> JWTSessionMiddleware:
    routes = [Route("/expires", expires), Route("/grow", grow), session_routes()]
    return JWTSessionMiddleware(
        Starlette(routes=routes, exception_handlers=exception_handlers), SECRET, **options)


async def get(app: JWTSessionMiddleware, path: str, cookie: str | bytes | None) -> Response:
    if isinstance(cookie, str):
        cookie = cookie.encode("latin-1")
    headers = [(b"cookie", cookie)] if cookie is not None else []
    path, _, query = path.partition("?")
    return await asgi_get(app, path, headers, query_string=query.encode())


def header_bytes(response: Response) -> int:
    """The response's header block as HTTP/1.1 puts it on the wire."""
    return sum(len(name) + len(value) + 4 for name, value in response.headers)


def deletions(response: Response) -> list[str]:
    return [line.split("=", 1)[0] for line in response.set_cookies if "Max-Age=0" in line]


def written(response: Response) -> list[str]:
    """``name=value`` of each cookie the response sets (deletions left out)."""
    return [line.split(";", 1)[0] for line in response.set_cookies if "Max-Age=0" not in line]


def claims(now: int, **extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "role": "USER", "jti": "j1", "iat": now, "exp": now + 3600,
            "auth_time": now, **extra}


# --- item 9: time claims that cannot be dates ---------------------------------------------------

NOW = int(time.time())
NOT_DATES: dict[str, dict[str, Any]] = {
    "exp past 9999": {"exp": MAX_TIME + 1},
    "exp 1e12": {"exp": 10**12},
    "exp in ms": {"exp": NOW * 1000 + 3_600_000},
    "exp huge": {"exp": 10**18},
    "iat negative": {"iat": -1},
    "nbf past 9999": {"nbf": MAX_TIME + 1},
    "auth_time in ms": {"auth_time": NOW * 1000},
    "chk past 9999": {"chk": 10**15},
    "auth_ms past 9999": {"auth_ms": (MAX_TIME + 1) * 1000},
}
AUTHJS_NOT_DATES: dict[str, dict[str, Any]] = {
    **{name: case for name, case in NOT_DATES.items() if "chk" not in name and "ms" not in name},
    "exp 1e20 float": {"exp": 1e20},
    "exp 1e15 float": {"exp": 1e15},
    "exp in ms float": {"exp": NOW * 1000.0 + 3_600_000},
    "exp negative float": {"exp": -5.0},
    "iat 1e16 float": {"iat": 1e16},
}


@pytest.mark.parametrize("case", list(NOT_DATES), ids=list(NOT_DATES))
async def test_time_claims_past_9999_read_as_no_session(case: str) -> None:
    """A correctly encrypted token with a time no datetime can hold: no session, no 500."""
    app = app_with()
    token = TokenCodec(SECRET).encode(claims(int(time.time()), **NOT_DATES[case]))
    response = await get(app, "/auth/session", f"session={token}")
    assert response.status == 200 and response.json()["session"] is None
    response = await get(app, "/expires", f"session={token}")
    assert response.status == 200 and response.json() == {"user": None, "expires": None}
    assert deletions(response) == ["session"]


@pytest.mark.parametrize("case", list(AUTHJS_NOT_DATES), ids=list(AUTHJS_NOT_DATES))
@pytest.mark.parametrize("write", [False, True])
async def test_authjs_time_claims_that_are_no_dates(case: str, write: bool) -> None:
    app = app_with(format=AuthJSFormat(write=write))
    now = int(time.time())
    token = AuthJSCodec(SECRET, salt=AUTHJS_COOKIE).encode(
        {"sub": "alice", "role": "USER", "iat": now, "exp": now + 3600,
         **AUTHJS_NOT_DATES[case]})
    response = await get(app, "/auth/session", f"{AUTHJS_COOKIE}={token}")
    assert response.status == 200 and response.json()["session"] is None
    response = await get(app, "/expires", f"{AUTHJS_COOKIE}={token}")
    assert response.status == 200 and response.json() == {"user": None, "expires": None}


async def test_the_last_second_of_9999_is_a_date() -> None:
    app = app_with()
    token = TokenCodec(SECRET).encode(claims(int(time.time()), exp=MAX_TIME))
    response = await get(app, "/expires", f"session={token}")
    assert response.json() == {"user": "alice", "expires": "9999-12-31T23:59:59+00:00"}
    response = await get(app, "/auth/session", f"session={token}")
    assert response.json()["session"]["expires"] == "9999-12-31T23:59:59Z"


# --- item 10: what the cache holds per token ---------------------------------------------------

TOKEN_SIZE = 12 * 1024


def big_claims(index: int, shape: str, now: int) -> dict[str, Any]:
    """Claims whose token is just under 12 KiB: one long string, or many small values,
    in the session data or in the user's own claims."""
    many = {f"item{i}": f"{index}-{i}-" + "v" * 14 for i in range(260)}
    one = {"blob": f"{index}-" + "b" * 8640}
    values = many if shape.endswith("many") else one
    base = claims(now, jti=f"jti-{index}", ver=1, chk=now, auth_ms=now * 1000)
    if shape.startswith("data"):
        return {**base, "data": values}
    return {**base, **values}


def entry_sizes(codec: Codec, make: Callable[[int], dict[str, Any]],
                count: int = 24) -> tuple[float, float]:
    """Average token length, and average bytes a cache entry keeps (traced), the token
    itself counted: it is the cache's key."""
    now = int(time.time())
    warm = codec.encode(make(-1))  # orjson's key cache and the like: not per entry
    Session.from_decoded(codec.decode_cached(warm, now))
    tokens = [codec.encode(make(i)) for i in range(count)]
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for token in tokens:
            Session.from_decoded(codec.decode_cached(token, now))  # as the middleware
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert all(token in codec.cache for token in tokens)
    length = sum(map(len, tokens)) / count
    return length, held / count + sum(map(sys.getsizeof, tokens)) / count


@pytest.mark.parametrize("shape", ["data-one", "data-many", "claims-one", "claims-many"])
@pytest.mark.parametrize("fmt", ["jwe", "authjs"])
def test_a_cached_12k_token_holds_at_most_twice_its_size(shape: str, fmt: str) -> None:
    if fmt == "jwe":
        codec: Codec = TokenCodec(SECRET, cache_size=100)
    else:
        codec = AuthJSCodec(SECRET, cache_size=100)
    length, entry = entry_sizes(codec, lambda i: big_claims(i, shape, int(time.time())))
    assert 0.9 * TOKEN_SIZE < length <= TOKEN_SIZE
    assert entry <= 2 * length, f"{entry:.0f} bytes for a {length:.0f}-character token"


def test_the_whole_cache_stays_within_its_stated_bound() -> None:
    """``cache_size * (2 * max_cached_size + 1.5 KiB)`` (codec.Codec's docstring), for
    big tokens and for small ones, where the fixed part of an entry dominates."""
    size = 64
    for make in (lambda i: big_claims(i, "data-many", int(time.time())),
                 lambda i: claims(int(time.time()), jti=f"j{i}", data={"n": i})):
        codec = TokenCodec(SECRET, cache_size=size)
        length, entry = entry_sizes(codec, make, count=size)
        assert entry <= 2 * length + 1536
        assert entry * size <= size * (2 * TOKEN_SIZE + 1536)


def test_tokens_over_the_cached_size_are_read_but_not_cached() -> None:
    codec = AuthJSCodec(SECRET, cache_size=10, max_token_size=32 * 1024)
    codec.max_cached_size = 1000
    now = int(time.time())
    big = codec.encode({"sub": "alice", "role": "USER", "blob": "x" * 2000})
    small = codec.encode({"sub": "alice", "role": "USER"})
    assert codec.decode(big, now=now)["blob"] == "x" * 2000
    codec.decode(small, now=now)
    assert list(codec.cache) == [small]


# --- item 11: a flood of chunk names -------------------------------------------------------------

FLOODS = [1_200, 20_000]


def flood(name: str, count: int, value: str = "x") -> str:
    return "; ".join(f"{name}.{i}={value}" for i in range(count))


@pytest.mark.parametrize("count", FLOODS)
@pytest.mark.parametrize("fmt", ["jwe", "authjs"])
async def test_a_chunk_flood_gets_a_small_answer(count: int, fmt: str) -> None:
    """Never more deletions than the chunks the server could write, never a header
    block of more than a few KB, whatever the request carried."""
    if fmt == "jwe":
        app, name = app_with(), "session"
    else:
        app, name = app_with(format=AuthJSFormat(write=True)), AUTHJS_COOKIE
    cookie = flood(name, count)
    started = time.process_time()
    response = await get(app, "/expires", cookie)
    elapsed = time.process_time() - started
    assert response.status == 200 and response.json()["user"] is None
    most = app.max_chunks[name]
    assert most == app.cookies[0][2].chunks_for(app.cookies[0][1].max_token_size)
    if fmt == "jwe":  # the chunks it could have written are expired, no more
        assert deletions(response) == [f"{name}.{i}" for i in range(most)]
    else:  # more chunks than it reads: maybe a large Auth.js session, left to Auth.js
        assert response.set_cookies == []
    assert header_bytes(response) < 2048, header_bytes(response)
    assert elapsed < 0.2  # 20,000 names took 0.33 s of CPU before
    print(f"{fmt} flood of {count:,} names ({len(cookie):,} bytes): "
          f"{len(response.set_cookies)} Set-Cookie lines, {header_bytes(response)} header bytes")


async def test_the_cap_is_the_most_chunks_the_server_writes() -> None:
    """The default budget (12 KiB) takes 4 chunks of this package's format; a token
    that uses all of them is read, and a client cannot make it more."""
    app = app_with()
    assert app.max_chunks == {"session": 4}
    token = TokenCodec(SECRET).encode(claims(int(time.time()), data={"b": "z" * 8900}))
    assert 3 * 4000 < len(token) <= 12 * 1024
    response = await get(app, "/grow?size=1", f"session={token}")
    lines = written(response)
    assert [line.split("=", 1)[0] for line in lines] == [f"session.{i}" for i in range(4)]
    chunks = "; ".join(lines)
    response = await get(app, "/expires", chunks + "; session.4=x; session.9999=y")
    assert response.json()["user"] == "alice" and response.set_cookies == []


@pytest.mark.parametrize("names", [
    "session.0001=a", "session.01=a; session.1=b", "session." + "9" * 5000 + "=a",
    "session.\u0661=a", "session.-1=a; session.+1=b",
], ids=["leading-zeros", "zero-padded", "5000-digits", "arabic-digit", "signs"])
async def test_odd_chunk_names_are_no_chunks(names: str) -> None:
    response = await get(app_with(), "/expires", names.encode())
    assert response.status == 200 and response.json()["user"] is None
    assert header_bytes(response) < 1024


async def test_a_planted_chunk_does_not_break_a_valid_session() -> None:
    app = app_with()
    token = TokenCodec(SECRET).encode(claims(int(time.time()), data={"b": "z" * 5000}))
    chunks = "; ".join(written(await get(app, "/grow?size=1", f"session={token}")))
    assert chunks.count("session.") == 2
    response = await get(app, "/expires", f"{chunks}; session.37=planted")
    assert response.json()["user"] == "alice"


# --- item 12 (this package's format): a re-issue that does not fit -----------------------------


def near_budget_token(now: int, budget: int = 12 * 1024, **extra: Any) -> str:
    """A token a few characters under ``budget`` that is due for renewal and has no
    ``chk`` or ``ver``: its re-issue under a freshness policy adds them, and does not
    fit (a re-issue never adds ``auth_time``, so without a policy it would fit)."""
    codec = TokenCodec(SECRET)
    base = {"sub": "alice", "role": "USER", "jti": "j1", "iat": now - 2 * DAY,
            "exp": now + DAY, **extra}
    low, high = 1, 12_000
    while low < high:  # the largest blob that fits
        mid = (low + high + 1) // 2
        if len(codec.encode({**base, "data": {"b": "q" * mid}})) <= budget:
            low = mid
        else:
            high = mid - 1
    token = codec.encode({**base, "data": {"b": "q" * low}})
    assert budget - 8 <= len(token) <= budget
    return token


async def test_a_renewal_that_does_not_fit_keeps_the_cookie(
        caplog: pytest.LogCaptureFixture) -> None:
    """The renewal (same user, same role) adds the check's ``chk`` and ``ver``."""
    app = app_with(freshness=Freshness(Users(alice=("USER", 1)), revalidate_after=60))
    token = near_budget_token(int(time.time()))
    with caplog.at_level(logging.WARNING, logger="asgi_jwt_session"):
        response = await get(app, "/expires", f"session={token}")
    assert response.status == 200 and response.json()["user"] == "alice"
    assert response.set_cookies == []  # left as it is: still valid for a day
    [record] = [r for r in caplog.records if r.name == "asgi_jwt_session"]
    assert record.levelno == logging.WARNING
    assert "not re-issued, left as it is" in record.getMessage()
    assert "'alice'" in record.getMessage() and "budget" in record.getMessage()


async def test_a_role_change_that_does_not_fit_keeps_the_cookie(
        caplog: pytest.LogCaptureFixture) -> None:
    """Revalidation (not the app) changed the session: the cookie stays, no 500."""
    now = int(time.time())
    app = app_with(freshness=Freshness(Users(alice=("ADMINISTRATOR", 7)), revalidate_after=60))
    token = near_budget_token(now, iat=now - 120, chk=now - 120, ver=1, auth_time=now - 120)
    with caplog.at_level(logging.WARNING, logger="asgi_jwt_session"):
        response = await get(app, "/expires", f"session={token}")
    assert response.status == 200 and response.set_cookies == []
    assert any("not re-issued" in r.getMessage() for r in caplog.records)


async def test_the_app_putting_too_much_in_the_session_still_raises() -> None:
    """The documented decision: the app's own change over the budget is the app's
    error (SessionTooLarge, before any byte of the response), whatever cookie came in."""
    app = app_with()
    now = int(time.time())
    token = TokenCodec(SECRET).encode(claims(now, data={"b": "z" * 8000}))
    with pytest.raises(SessionTooLarge, match="over the budget"):
        await get(app, "/grow?size=4000", f"session={token}")
    near = near_budget_token(now)
    with pytest.raises(SessionTooLarge):
        await get(app, "/grow?size=50", f"session={near}")
    with pytest.raises(SessionTooLarge):
        await get(app, "/grow?size=20000", None)
    # What fits is written.
    response = await get(app, "/grow?size=100", f"session={token}")
    assert response.status == 200 and response.set_cookies


# --- item 15: a cookie of the other format -----------------------------------------------------


async def test_an_authjs_cookie_in_a_jwe_app_says_so(caplog: pytest.LogCaptureFixture) -> None:
    app = app_with(session_cookie=AUTHJS_COOKIE)
    token = AuthJSCodec(SECRET, salt=AUTHJS_COOKIE).encode({"sub": "alice", "role": "USER"})
    with caplog.at_level(logging.DEBUG, logger="asgi_jwt_session"):
        response = await get(app, "/expires", f"{AUTHJS_COOKIE}={token}")
    assert response.status == 200 and response.json()["user"] is None
    [record] = [r for r in caplog.records if r.name == "asgi_jwt_session"]
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert f"session cookie {AUTHJS_COOKIE} refused" in message
    assert "looks like an Auth.js session token" in message
    assert "format=AuthJSFormat()" in message
