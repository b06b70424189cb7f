"""Better Auth's tables behind its sessions, on one PostgreSQL database shared by the real
``better-auth`` (node, pg) and the Python side: no query with the cookie cache on; one
query per session with only ``session_token``; a sign-out, a ban or a role change made
by Better Auth reaches the Python side through the trigger's NOTIFY feed, or at the
next revalidation."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, auth
from asgi_jwt_session.betterauth import BETTER_AUTH_ROLES, BetterAuthFormat
from asgi_jwt_session.betterauth_sessions import BetterAuthSessions, BetterAuthTokenSessions
from asgi_jwt_session.freshness import PostgresVersionFeed
from asgi_jwt_session.store.betterauth import BetterAuthTables, notify_trigger_sql
from support.servers import PostgresServer
from tests.betterauth_node import SECRET, App, BetterAuth
from tests.conftest import new_database

DATA = "better-auth.session_data"
TOKEN = "better-auth.session_token"


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    user = session.user if session is not None else None
    return JSONResponse({"id": user.id if user else None, "role": user.role if user else None})


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    """A database of this module's own, with Better Auth's tables and the trigger."""
    return new_database(postgres.dsn, "betterauth")


@pytest.fixture(scope="module")
def node_app(betterauth: BetterAuth, database: str) -> App:
    app = betterauth.app(postgres=database, cookieCache={"enabled": True, "strategy": "jwe"})

    import asyncio

    import asyncpg

    async def install() -> None:
        connection = await asyncpg.connect(database)
        try:
            for statement in notify_trigger_sql():
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(install())
    return app


class Service:
    """The Python service: its app, client, tables and feed."""

    def __init__(self, database: str, *, revalidate_after: int | None = None,
                 feed: bool = False) -> None:
        self.tables = BetterAuthTables(database)
        # The feed listens on the tables' own channel, the one their trigger notifies.
        self.feed = PostgresVersionFeed(self.tables, max_age=600) if feed else None
        self.sessions = BetterAuthSessions(self.tables, secret_key=SECRET, feed=self.feed,
                                           revalidate_after=revalidate_after)

        @asynccontextmanager
        async def lifespan(app: Any) -> AsyncIterator[None]:
            async with self.tables:
                if self.feed is not None:
                    async with self.feed:
                        yield
                else:
                    yield

        self.app = Starlette(routes=[Route("/me", me)], lifespan=lifespan, middleware=[
            Middleware(JWTSessionMiddleware, secret_key=SECRET, roles=BETTER_AUTH_ROLES,  # type: ignore[arg-type]
                       format=BetterAuthFormat("jwe"), freshness=self.sessions),
            Middleware(BetterAuthTokenSessions, sessions=self.sessions),  # type: ignore[arg-type]
        ])
        self.client = TestClient(self.app)

    def read(self, cookies: dict[str, str]) -> dict[str, Any]:
        response = self.client.get("/me", headers={
            "cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())})
        assert response.status_code == 200, response.text
        assert not response.headers.get_list("set-cookie")
        body: dict[str, Any] = response.json()
        return body

    def wait_for_change(self, user_id: str, after_ms: int) -> None:
        """Until the feed has a change of ``user_id`` after ``after_ms`` (bounded)."""
        assert self.feed is not None
        for _ in range(200):
            newest = self.feed.newest(user_id)
            if newest is not None and newest > after_ms:
                return
            time.sleep(0.025)
        raise AssertionError("the feed never received the change")


@pytest.fixture
def service(database: str) -> Iterator[Service]:
    service = Service(database, feed=True)
    with service.client:
        assert service.feed is not None
        for _ in range(200):
            if service.feed.connected.is_set():
                break
            time.sleep(0.025)
        yield service


def email() -> str:
    return f"user-{uuid.uuid4().hex[:8]}@example.com"


def admin_cookies(node_app: App) -> dict[str, str]:
    address = email()
    admin_id, _ = node_app.sign_up(address)
    node_app.update_user(admin_id, role="admin")
    return node_app.sign_in(address)


def test_cookie_cache_requests_make_no_query(node_app: App, service: Service) -> None:
    user_id, cookies = node_app.sign_up(email())
    for _ in range(20):
        assert service.read(cookies) == {"id": user_id, "role": "user"}
    assert service.tables.queries == 0


def test_session_token_alone_reads_the_tables_once(node_app: App, service: Service) -> None:
    user_id, cookies = node_app.sign_up(email())
    token_only = {TOKEN: cookies[TOKEN]}
    for _ in range(10):
        assert service.read(token_only) == {"id": user_id, "role": "user"}
    assert service.tables.queries == 1
    # A forged or foreign token: no session, and no query.
    value = cookies[TOKEN]
    for bad in (value[:-5] + "AAAA%3D", "x" + value, value.split(".")[0], "", "%ZZ"):
        assert service.read({TOKEN: bad})["id"] is None
    assert service.tables.queries == 1


def test_sign_out_on_better_auth_is_seen(node_app: App, service: Service) -> None:
    user_id, cookies = node_app.sign_up(email())
    assert service.read(cookies)["id"] == user_id
    before = int(time.time() * 1000)
    node_app.sign_out(cookies)  # deletes the session row; this browser keeps its cookies
    service.wait_for_change(user_id, before)
    assert service.read(cookies)["id"] is None
    assert service.read({TOKEN: cookies[TOKEN]})["id"] is None
    assert service.tables.queries == 2  # one for the cookie cache, one for the token


def test_ban_on_better_auth_is_seen(node_app: App, service: Service) -> None:
    admin = admin_cookies(node_app)
    user_id, cookies = node_app.sign_up(email())
    assert service.read(cookies)["id"] == user_id
    before = int(time.time() * 1000)
    node_app.ban(admin, user_id)
    service.wait_for_change(user_id, before)
    assert service.read(cookies)["id"] is None


def test_role_change_on_better_auth_is_seen(node_app: App, service: Service) -> None:
    admin = admin_cookies(node_app)
    user_id, cookies = node_app.sign_up(email())
    assert service.read(cookies)["role"] == "user"
    before = int(time.time() * 1000)
    node_app.set_role(admin, user_id, "admin")
    service.wait_for_change(user_id, before)
    for _ in range(5):  # one query, then remembered until the next change
        assert service.read(cookies) == {"id": user_id, "role": "admin"}
    assert service.tables.queries == 1


def test_without_a_feed_revalidation_sees_the_sign_out(node_app: App, database: str,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    service = Service(database, revalidate_after=60)
    with service.client:
        user_id, cookies = node_app.sign_up(email())
        assert service.read(cookies)["id"] == user_id
        node_app.sign_out(cookies)
        assert service.read(cookies)["id"] == user_id  # not due yet: the cookie holds
        assert service.tables.queries == 0
        later = time.time() + 61  # due, and the cookie cache (300 s) still valid
        monkeypatch.setattr(time, "time", lambda: later)
        assert service.read(cookies)["id"] is None
        # One query for the cookie cache's session, one for the token it leaves.
        assert service.tables.queries == 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_registry_lists_better_auth_sessions(node_app: App, database: str) -> None:
    from asgi_jwt_session.registry import list_sessions

    address = email()
    user_id, first = node_app.sign_up(address)
    second = node_app.sign_in(address)
    node_app.sign_in(address)
    async with BetterAuthTables(database) as tables:
        page = await list_sessions(tables, user_id, limit=2)  # type: ignore[arg-type]
        assert len(page) == 2 and page.next_cursor is not None
        rest = await list_sessions(tables, user_id, cursor=page.next_cursor)  # type: ignore[arg-type]
        assert len(rest) == 1
        ids = {stored.id for stored in [*page, *rest]}
        assert len(ids) == 3 and all(stored.user_id == user_id for stored in [*page, *rest])
        node_app.sign_out(second)
        assert len(await list_sessions(tables, user_id)) == 2  # type: ignore[arg-type]
        assert node_app.get_session(first)["user"]["id"] == user_id
