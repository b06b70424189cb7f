"""Freshness through JWTSessionMiddleware: re-issued cookies, sign-outs, query counts.

With a plain ``user_loader`` under asyncio and trio; with a real RoleStore on
PostgreSQL (asyncio, like the store) for the query counts and a stopped database.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, auth, login
from asgi_jwt_session.freshness import CheckedUser, VersionFeed
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role
from tests.servers import PostgresServer

pytestmark = pytest.mark.anyio

SECRET = "freshness-secret-" + "k" * 32


async def sign_in(request: Request) -> JSONResponse:
    login(request, request.query_params["user"], request.query_params.get("role", "ADMIN"),
          version=int(request.query_params.get("ver", "1")))
    return JSONResponse({})


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse(None, status_code=401)
    return JSONResponse({"role": session.user.role, "ver": session.version,
                         "chk": session.checked_at})


def make_app(**options: Any) -> JWTSessionMiddleware:
    app = Starlette(routes=[Route("/login", sign_in, methods=["POST"]), Route("/me", me)])
    return JWTSessionMiddleware(app, secret_key=SECRET, **options)


def client(app: JWTSessionMiddleware, cookies: dict[str, str] | None = None
           ) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                             cookies=cookies)


def stale_cookie(app: JWTSessionMiddleware, user: str, role: str, ver: int,
                 age: int = 400) -> dict[str, str]:
    """A session cookie whose role was last checked ``age`` seconds ago."""
    now = int(time.time())
    claims = {"sub": user, "role": role, "ver": ver, "chk": now - age, "jti": "j",
              "iat": now - age, "exp": now + 3600, "auth_time": now - age}
    return {"session": app.codec.encode(claims)}


def expires_session(response: httpx.Response) -> bool:
    """The response expires the session cookie (``session=; ...; Max-Age=0``)."""
    return any(line.startswith("session=;") and "max-age=0" in line.lower()
               for line in response.headers.get_list("set-cookie"))


class Loader:
    def __init__(self, **users: tuple[str, int]) -> None:
        self.users: dict[str, Any] = dict(users)
        self.calls = 0

    async def __call__(self, user_id: str) -> Any:
        self.calls += 1
        await anyio.sleep(0)
        return self.users.get(user_id)


class Clock:
    """Moves ``time.time`` forward by ``offset`` seconds (everything else runs on
    monotonic clocks)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + self.offset)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


# --- with a user_loader: asyncio and trio -------------------------------------------------


def test_options() -> None:
    assert make_app().freshness is None  # off without a store or loader
    fresh = make_app(user_loader=Loader())
    assert fresh.freshness is not None and fresh.freshness.revalidate_after == 300
    assert make_app(user_loader=Loader(), revalidate_after=60).freshness.revalidate_after == 60  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        make_app(user_loader=Loader(), revalidate_after=0)
    with pytest.raises(ValueError):
        make_app(user_loader=Loader(), on_store_error="ignore")


async def test_ordinary_requests_do_not_load(clock: Clock) -> None:
    loader = Loader(alice=("ADMIN", 1))
    app = make_app(user_loader=loader)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice"})
        for _ in range(20):
            response = await c.get("/me")
            assert response.json()["role"] == "ADMIN"
            assert "set-cookie" not in response.headers
        assert loader.calls == 0
        clock.offset = 299
        assert (await c.get("/me")).status_code == 200 and loader.calls == 0
        clock.offset = 300  # chk is revalidate_after old
        response = await c.get("/me")
        assert loader.calls == 1 and "set-cookie" in response.headers
        assert response.json()["chk"] == int(time.time())
        for _ in range(20):
            assert "set-cookie" not in (await c.get("/me")).headers
        assert loader.calls == 1


async def test_stale_cookie_is_revalidated_and_reissued() -> None:
    loader = Loader(alice=("USER", 2))
    app = make_app(user_loader=loader)
    async with client(app, stale_cookie(app, "alice", "ADMIN", 1)) as c:
        response = await c.get("/me")
        assert response.json()["role"] == "USER" and response.json()["ver"] == 2
        assert "set-cookie" in response.headers
        assert (await c.get("/me")).json()["role"] == "USER"
    assert loader.calls == 1


async def test_feed_change_is_seen_on_the_next_request() -> None:
    loader = Loader(alice=("ADMIN", 1))
    feed = VersionFeed()
    app = make_app(user_loader=loader, feed=feed)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice"})
        loader.users["alice"] = ("USER", 2)
        assert (await c.get("/me")).json()["role"] == "ADMIN"  # nobody told it yet
        feed.publish("alice", 2)
        assert (await c.get("/me")).json()["role"] == "USER"
        assert loader.calls == 1
        loader.users["alice"] = CheckedUser("USER", 3, revoked_at=int(time.time()))  # revoked
        feed.publish("alice", 3)
        response = await c.get("/me")
        assert response.status_code == 401 and expires_session(response)
        assert "session" not in c.cookies


async def test_missed_role_changes_keep_the_session() -> None:
    loader = Loader(alice=("ADMIN", 1))
    feed = VersionFeed()
    app = make_app(user_loader=loader, feed=feed)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice"})
        loader.users["alice"] = ("ORG_ADMIN", 3)  # two role changes while idle
        feed.publish("alice", 3)
        response = await c.get("/me")
        assert response.json()["role"] == "ORG_ADMIN" and response.json()["ver"] == 3
        assert "set-cookie" in response.headers


@pytest.mark.parametrize("user", [None, ("ADMIN", 1, True)])
async def test_deleted_or_disabled_user_is_signed_out(user: Any) -> None:
    class Row:
        def __init__(self, role: str, session_version: int, disabled: bool) -> None:
            self.role, self.session_version, self.disabled = role, session_version, disabled

    loader = Loader()
    if user is not None:
        loader.users["alice"] = Row(*user)
    app = make_app(user_loader=loader)
    async with client(app, stale_cookie(app, "alice", "ADMIN", 1)) as c:
        response = await c.get("/me")
        assert response.status_code == 401 and expires_session(response)


async def test_concurrent_requests_share_one_load() -> None:
    loader = Loader(alice=("ADMIN", 1))
    app = make_app(user_loader=loader)
    cookie = stale_cookie(app, "alice", "ADMIN", 1)
    statuses: list[int] = []

    async def one() -> None:
        async with client(app, cookie) as c:
            statuses.append((await c.get("/me")).status_code)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one)
    assert statuses == [200] * 50 and loader.calls == 1


# --- with a RoleStore on PostgreSQL: asyncio ----------------------------------------------


@pytest.fixture
async def store(postgres: PostgresServer) -> AsyncIterator[RoleStore]:
    async with RoleStore(postgres.dsn, table=f"users_{uuid.uuid4().hex[:12]}") as store:
        await store.create_tables()
        await store.create_user("alice", "ADMIN")
        yield store


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_query_counts(store: RoleStore, clock: Clock) -> None:
    app = make_app(store=store)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice"})
        start = store.queries
        for _ in range(100):
            assert (await c.get("/me")).status_code == 200
        assert store.queries == start  # ordinary requests: zero
        for window in range(1, 4):  # many requests inside each window: one query each
            clock.offset = 300 * window
            for _ in range(50):
                assert (await c.get("/me")).json()["role"] == "ADMIN"
            assert store.queries == start + window

        # A client that never stores the new cookie costs no more.
        cookie = stale_cookie(app, "alice", "ADMIN", 1, age=400)
        before = store.queries
        for _ in range(50):
            async with client(app, cookie) as stateless:
                assert (await stateless.get("/me")).status_code == 200
        assert store.queries - before <= 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_fifty_concurrent_requests_make_one_query(store: RoleStore) -> None:
    app = make_app(store=store)
    cookie = stale_cookie(app, "alice", "ADMIN", 1)
    before = store.queries

    async def one(results: list[int]) -> None:
        async with client(app, cookie) as c:
            results.append((await c.get("/me")).status_code)

    results: list[int] = []
    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one, results)
    assert results == [200] * 50
    assert store.queries == before + 1


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_changes_publish_to_the_default_feed(store: RoleStore) -> None:
    app = make_app(store=store)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice", "ver": "1"})
        await update_user_role(store, "alice", "USER")
        assert (await c.get("/me")).json() == {"role": "USER", "ver": 2,
                                               "chk": int(time.time())}
        await revoke_sessions(store, "alice")
        assert (await c.get("/me")).status_code == 401
        await c.post("/login", params={"user": "alice", "ver": "3"})
        await store.set_disabled("alice", True)
        assert (await c.get("/me")).status_code == 401


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_two_role_changes_keep_the_newest_role(store: RoleStore) -> None:
    app = make_app(store=store)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice", "ver": "1"})
        await update_user_role(store, "alice", "USER")
        await update_user_role(store, "alice", "ORG_ADMIN")
        assert (await c.get("/me")).json()["role"] == "ORG_ADMIN"
        await update_user_role(store, "alice", "ADMIN")  # the same role as at sign-in
        await update_user_role(store, "alice", "ADMIN")
        assert (await c.get("/me")).json() == {"role": "ADMIN", "ver": 5,
                                               "chk": int(time.time())}


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("order", ["revoke first", "role change first"])
async def test_store_revocation_with_a_role_change_signs_out(store: RoleStore,
                                                             order: str) -> None:
    app = make_app(store=store)
    async with client(app) as c:
        await c.post("/login", params={"user": "alice", "ver": "1"})
        if order == "revoke first":
            await revoke_sessions(store, "alice")
            await update_user_role(store, "alice", "USER")
        else:
            await update_user_role(store, "alice", "USER")
            await revoke_sessions(store, "alice")
        response = await c.get("/me")
        assert response.status_code == 401 and expires_session(response)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_sign_in_after_a_revocation_stays(store: RoleStore, clock: Clock) -> None:
    app = make_app(store=store)
    revoked = await revoke_sessions(store, "alice")
    assert revoked.revoked_at is not None
    clock.offset = 1  # the next second: a sign-in in the revocation's second is signed out
    async with client(app) as c:
        await c.post("/login", params={"user": "alice", "ver": "2"})
        await update_user_role(store, "alice", "USER")  # the feed makes it revalidate
        response = await c.get("/me")
        assert response.json()["role"] == "USER" and "set-cookie" in response.headers
        clock.offset = 1 + 300  # and on the periodic check
        assert (await c.get("/me")).json()["role"] == "USER"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_stopped(own_postgres: PostgresServer, clock: Clock,
                             caplog: pytest.LogCaptureFixture) -> None:
    async with RoleStore(own_postgres.dsn) as store:
        await store.create_tables()
        await store.create_user("alice", "ADMIN")
        keep = make_app(store=store)
        signout = make_app(store=store, on_store_error="signout")
        async with client(keep) as c:
            await c.post("/login", params={"user": "alice"})
            own_postgres.stop()
            for _ in range(20):  # ordinary requests: served from the cookie
                assert (await c.get("/me")).json()["role"] == "ADMIN"

            clock.offset = 400  # revalidation due, the store is down
            for _ in range(20):
                response = await c.get("/me")
                assert response.json()["role"] == "ADMIN"  # "keep": current claims
                assert "set-cookie" not in response.headers  # chk stays old: retried
            failures = [r for r in caplog.records if "unreachable" in r.getMessage()]
            assert len(failures) == 1  # logged once per interval

            async with client(signout, stale_cookie(signout, "alice", "ADMIN", 1)) as s:
                assert (await s.get("/me")).status_code == 401

            own_postgres.start()
            clock.offset = 400 + 30  # retry_after passed
            response = await c.get("/me")
            assert response.status_code == 200 and "set-cookie" in response.headers
