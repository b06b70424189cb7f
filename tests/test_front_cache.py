"""The front cache: a Cookie header seen before is answered from its entry, which
vouches for the token only while nothing is due. Whatever the clock, the order of
requests and the token's times, a middleware with it answers exactly as one that
decodes and checks every cookie from scratch (``cache_size=0``: no caches at all)."""

from __future__ import annotations

import gc
import itertools
import random
import threading
import tracemalloc
from typing import Any

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, auth
from asgi_jwt_session.front import FRONT_MAX_BYTES, FRONT_SIZE
from tests.asgi import Response, asgi_get
from tests.conftest import OLD_SECRET, SECRET, Clock

pytestmark = pytest.mark.anyio

T0 = 1_900_000_000
LEEWAY = 10
UPDATE_AGE = 600
MAX_AGE = 3600
LIFETIME = 5000


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    session = auth(scope)
    body = b"-" if session is None else f"{session.user.id} {session.user.role}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def middleware(cache_size: int = 64, secret: Any = SECRET) -> JWTSessionMiddleware:
    return JWTSessionMiddleware(whoami, secret_key=secret, max_age=MAX_AGE,
                                update_age=UPDATE_AGE, max_lifetime=LIFETIME,
                                leeway=LEEWAY, cache_size=cache_size)


def token(mw: JWTSessionMiddleware, **claims: Any) -> str:
    """A token of ``mw``'s newest key with these claims (a user, unless given)."""
    claims = {"sub": "u1", "role": "USER", "jti": "j1", **claims}
    claims = {name: value for name, value in claims.items() if value is not None}
    return mw.cookies[0][1].encode(claims)


def outcome(response: Response) -> tuple[int, bytes, list[str], list[str]]:
    """What a client sees: status, body, whether cookies are set or expired, Vary."""
    kinds = ["expire" if "Max-Age=0" in line else "set" for line in response.set_cookies]
    return response.status, response.body, kinds, response.header("vary")


async def compare(clock: Clock, cookie: str, times: list[int]) -> None:
    cached, plain = middleware(), middleware(cache_size=0)
    headers = [(b"cookie", f"session={cookie}".encode())]
    for now in times:
        clock.now = float(now)
        assert outcome(await asgi_get(cached, headers=headers)) == outcome(
            await asgi_get(plain, headers=headers)), f"at T0{now - T0:+d}"


def boundaries(*points: int | None) -> list[int]:
    """Each point, a second either side, and the middle between points."""
    known = sorted(p for p in points if p is not None)
    times = {t + d for t in known for d in (-1, 0, 1)}
    times |= {(a + b) // 2 for a, b in itertools.pairwise(known)}
    return sorted(times)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("order", ["forward", "backward", "shuffled"])
@pytest.mark.parametrize("remember", [True, False])
@pytest.mark.parametrize("signed_in", [100, LIFETIME - 300], ids=["recent", "near-the-end"])
async def test_the_front_cache_answers_as_a_full_check_at_every_boundary(
        clock: Clock, order: str, remember: bool, signed_in: int) -> None:
    # near-the-end: the absolute lifetime ends before the token is due for renewal.
    iat, nbf, auth_time = T0, T0 + 30, T0 - signed_in
    exp = iat + MAX_AGE
    mw = middleware()
    cookie = token(mw, iat=iat, nbf=nbf, exp=exp, auth_time=auth_time,
                   rem=None if remember else False)
    lifetime = LIFETIME if remember else mw.config.lifetime(False)
    renew_at = iat + (mw.renew_after if remember else mw.browser_renew_after)
    times = boundaries(iat - LEEWAY, nbf - LEEWAY, renew_at, exp + LEEWAY,
                       auth_time + lifetime)
    if order == "backward":
        times.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(times)
    await compare(clock, cookie, times)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@given(iat=st.none() | st.integers(-50, 50), nbf=st.none() | st.integers(-50, 50),
       exp=st.integers(-20, 4000), auth_time=st.none() | st.integers(-6000, 0),
       remember=st.booleans(), times=st.lists(st.integers(-100, 6000), max_size=12))
async def test_any_token_times_and_any_clock(iat: int | None, nbf: int | None, exp: int,
                                             auth_time: int | None, remember: bool,
                                             times: list[int]) -> None:
    clock = Clock(float(T0))
    with pytest.MonkeyPatch.context() as patch:
        import time
        patch.setattr(time, "time", clock)
        cookie = token(middleware(), iat=None if iat is None else T0 + iat,
                       nbf=None if nbf is None else T0 + nbf, exp=T0 + exp,
                       auth_time=None if auth_time is None else T0 + auth_time,
                       rem=None if remember else False)
        await compare(clock, cookie, [T0 + t for t in times])


async def test_a_token_of_an_older_key_is_reissued_every_time(clock: Clock) -> None:
    clock.now = float(T0)
    old = token(middleware(secret=OLD_SECRET), iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
    rotated = middleware(secret=[SECRET, OLD_SECRET])
    headers = [(b"cookie", f"session={old}".encode())]
    for _ in range(3):  # a client that ignores the new cookie keeps getting it
        response = await asgi_get(rotated, headers=headers)
        assert response.body == b"u1 USER"
        assert outcome(response)[2] == ["set"]


async def test_the_front_cache_is_bounded_in_entries_and_in_key_size(clock: Clock) -> None:
    clock.now = float(T0)
    mw = middleware(cache_size=10 * FRONT_SIZE)
    cookie = token(mw, iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
    for i in range(FRONT_SIZE + 50):
        headers = [(b"cookie", f"n={i}; session={cookie}".encode())]
        assert (await asgi_get(mw, headers=headers)).body == b"u1 USER"
    assert len(mw.front) == FRONT_SIZE
    padded = [(b"cookie", b"pad=" + b"x" * FRONT_MAX_BYTES + f"; session={cookie}".encode())]
    before = set(mw.front)
    assert (await asgi_get(mw, headers=padded)).body == b"u1 USER"
    assert set(mw.front) == before  # a header longer than FRONT_MAX_BYTES is not kept


async def test_a_front_entry_holds_little_more_than_its_header(clock: Clock) -> None:
    """Memory: headers near FRONT_MAX_BYTES, one token (its decoded claims are the
    token cache's): each entry keeps its header, the token read from it and a few
    hundred bytes more."""
    clock.now = float(T0)
    mw = middleware(cache_size=10 * FRONT_SIZE)
    cookie = token(mw, iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
    pad = b"x" * (FRONT_MAX_BYTES - len(cookie) - 40)
    headers = [[(b"cookie", b"p%d=" % i + pad + f"; session={cookie}".encode())]
               for i in range(200)]
    await asgi_get(mw, headers=[(b"cookie", f"session={cookie}".encode())])
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for one in headers:
            assert (await asgi_get(mw, headers=one)).body == b"u1 USER"
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(mw.front) == 1 + len(headers)
    # The headers themselves are the test's: an entry's own share is what it adds.
    assert held / len(headers) <= len(cookie) + 512, f"{held / len(headers):.0f} bytes"


async def test_the_front_cache_keeps_the_headers_in_use(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """Users in turn, fewer than the front holds, and one never-seen header in ten:
    only the new headers are scanned (a first-in first-out front would evict each
    user just before its turn and scan nearly every request)."""
    clock.now = float(T0)
    mw = middleware(cache_size=10 * FRONT_SIZE)
    cookie = token(mw, iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
    scans = 0
    scan = mw.front.scan_one  # a request's one Cookie header, read when not in front

    def counting(cookie: bytes) -> Any:
        nonlocal scans
        scans += 1
        return scan(cookie)

    monkeypatch.setattr(mw.front, "scan_one", counting)
    count = (FRONT_SIZE - FRONT_SIZE // 10) // 10 * 10  # the same users make way each turn
    users = [[(b"cookie", f"u={i}; session={cookie}".encode())] for i in range(count)]
    for headers in users:
        assert (await asgi_get(mw, headers=headers)).body == b"u1 USER"
    assert scans == len(users)
    new = 0
    for i in range(3 * len(users)):
        headers = users[i % len(users)]
        if i % 10 == 9:
            new += 1
            headers = [(b"cookie", f"new={i}; session={cookie}".encode())]
        assert (await asgi_get(mw, headers=headers)).body == b"u1 USER"
    assert scans == len(users) + new


async def test_two_cookie_headers_are_never_answered_from_the_front(clock: Clock) -> None:
    clock.now = float(T0)
    mw = middleware()
    good = token(mw, iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
    one = [(b"cookie", f"session={good}".encode())]
    assert (await asgi_get(mw, headers=one)).body == b"u1 USER"
    # The same header again, then a second one with a broken chunk set of the session.
    two = [*one, (b"cookie", b"session.0=x")]
    plain = middleware(cache_size=0)
    assert outcome(await asgi_get(mw, headers=two)) == outcome(
        await asgi_get(plain, headers=two))
    assert len(mw.front) == 1


def test_threads_share_the_front_cache_safely(clock: Clock) -> None:
    clock.now = float(T0)
    mw = middleware(cache_size=256)
    cookies = [token(mw, sub=f"u{i}", iat=T0, exp=T0 + MAX_AGE, auth_time=T0)
               for i in range(64)]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        pick = random.Random(seed)

        async def run() -> None:
            for _ in range(300):
                i = pick.randrange(len(cookies))
                extra = pick.randrange(400)  # many distinct headers: entries come and go
                headers = [(b"cookie", f"x={extra}; session={cookies[i]}".encode())]
                response = await asgi_get(mw, headers=headers)
                assert response.body == f"u{i} USER".encode()

        try:
            anyio.run(run)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(mw.front) <= min(FRONT_SIZE, 256)
