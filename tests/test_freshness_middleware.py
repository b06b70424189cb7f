"""Freshness through JWTSessionMiddleware: re-issued cookies, sign-outs, query counts.

With a plain user loader under asyncio and trio; with a real RoleStore on PostgreSQL
(asyncio, like the store) for the query counts and a stopped database. There the app's
lifespan opens the store, and ``client.portal.call`` runs store calls (and raw requests)
on the app's event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from asgi_jwt_session.freshness import CheckedUser, Freshness, VersionFeed
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role
from asgi_jwt_session.tokens import TokenCodec
from support.servers import PostgresServer
from tests.asgi import asgi_get
from tests.conftest import SECRET, Clock, Users, make_app, opening, sign_in

Client = Callable[..., TestClient]


def stale_cookie(user: str, role: str, ver: int, age: int = 400) -> str:
    """A session cookie whose role was last checked ``age`` seconds ago."""
    now = int(time.time())
    claims = {"sub": user, "role": role, "ver": ver, "chk": now - age, "jti": "j",
              "iat": now - age, "exp": now + 3600, "auth_time": now - age}
    return f"session={TokenCodec(SECRET).encode(claims)}"


def expires_session(lines: list[str]) -> bool:
    """The Set-Cookie lines expire the session cookie (``session=; ...; Max-Age=0``)."""
    return any(line.startswith("session=;") and "max-age=0" in line.lower() for line in lines)


def signed_out(response: httpx.Response) -> bool:
    return response.json()["id"] is None and expires_session(
        response.headers.get_list("set-cookie"))


async def many(app: ASGIApp, cookie: str, times: int) -> list[int]:
    """``times`` requests for /me at once, each with ``cookie``: their statuses."""
    statuses: list[int] = []

    async def one() -> None:
        response = await asgi_get(app, "/me", [(b"cookie", cookie.encode())])
        assert response.json()["id"] is not None
        statuses.append(response.status)

    async with anyio.create_task_group() as tg:
        for _ in range(times):
            tg.start_soon(one)
    return statuses


# --- with a user loader: asyncio and trio -------------------------------------------------


def test_options() -> None:
    freshness = Freshness(Users())
    assert freshness.revalidate_after == 300 and freshness.on_store_error == "keep"
    assert Freshness(Users(), revalidate_after=60).revalidate_after == 60
    for bad in ({"revalidate_after": 0}, {"on_store_error": "ignore"}, {"timeout": 0}):
        with pytest.raises(ValueError):
            Freshness(Users(), **bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Freshness("not a store")  # type: ignore[arg-type]


def test_ordinary_requests_do_not_load(client_for: Client, clock: Clock) -> None:
    users = Users(alice=("ADMIN", 1))
    c = client_for(freshness=Freshness(users))
    sign_in(c, "alice", "ADMIN")
    start = clock.now
    for _ in range(20):
        response = c.get("/me")
        assert response.json()["role"] == "ADMIN"
        assert "set-cookie" not in response.headers
    assert users.calls == 0
    clock.now = start + 299
    assert c.get("/me").json()["id"] == "alice" and users.calls == 0
    clock.now = start + 300  # chk is revalidate_after old
    response = c.get("/me")
    assert users.calls == 1 and "set-cookie" in response.headers
    assert response.json()["chk"] == int(time.time())
    for _ in range(20):
        assert "set-cookie" not in c.get("/me").headers
    assert users.calls == 1


def test_stale_cookie_is_revalidated_and_reissued(client_for: Client) -> None:
    users = Users(alice=("USER", 2))
    c = client_for(freshness=Freshness(users))
    c.headers["cookie"] = stale_cookie("alice", "ADMIN", 1)
    response = c.get("/me")
    assert response.json()["role"] == "USER" and response.json()["version"] == 2
    assert "set-cookie" in response.headers
    del c.headers["cookie"]  # from here on the cookie jar's, re-issued
    assert c.get("/me").json()["role"] == "USER"
    assert users.calls == 1


def test_feed_change_is_seen_on_the_next_request(client_for: Client) -> None:
    users = Users(alice=("ADMIN", 1))
    feed = VersionFeed()
    c = client_for(freshness=Freshness(users, feed=feed))
    sign_in(c, "alice", "ADMIN")
    users.users["alice"] = ("USER", 2)
    assert c.get("/me").json()["role"] == "ADMIN"  # nobody told it yet
    feed.publish("alice", 2)
    assert c.get("/me").json()["role"] == "USER"
    assert users.calls == 1
    users.users["alice"] = CheckedUser("USER", 3, revoked_at=time.time())  # revoked
    feed.publish("alice", 3)
    assert signed_out(c.get("/me"))
    assert "session" not in c.cookies


def test_missed_role_changes_keep_the_session(client_for: Client) -> None:
    users = Users(alice=("ADMIN", 1))
    feed = VersionFeed()
    c = client_for(freshness=Freshness(users, feed=feed))
    sign_in(c, "alice", "ADMIN")
    users.users["alice"] = ("ORG_ADMIN", 3)  # two role changes while idle
    feed.publish("alice", 3)
    response = c.get("/me")
    assert response.json()["role"] == "ORG_ADMIN" and response.json()["version"] == 3
    assert "set-cookie" in response.headers


@pytest.mark.parametrize("user", [None, ("ADMIN", 1, True)])
def test_deleted_or_disabled_user_is_signed_out(client_for: Client, user: Any) -> None:
    class Row:
        def __init__(self, role: str, session_version: int, disabled: bool) -> None:
            self.role, self.session_version, self.disabled = role, session_version, disabled

    users = Users()
    if user is not None:
        users.users["alice"] = Row(*user)
    c = client_for(freshness=Freshness(users))
    assert signed_out(c.get("/me", headers={"cookie": stale_cookie("alice", "ADMIN", 1)}))


@pytest.mark.anyio
async def test_concurrent_requests_share_one_load() -> None:
    users = Users(alice=("ADMIN", 1))
    app = make_app(freshness=Freshness(users))
    assert await many(app, stale_cookie("alice", "ADMIN", 1), 50) == [200] * 50
    assert users.calls == 1


# --- with a RoleStore on PostgreSQL: asyncio ----------------------------------------------


@pytest.fixture
def store(postgres: PostgresServer, table: str) -> RoleStore:
    """A RoleStore on the shared server, not connected: the app's lifespan opens it."""
    return RoleStore(postgres.dsn, table=table)


@pytest.fixture
def client(client_for: Client, store: RoleStore) -> Any:
    """The app with freshness on ``store``, running (lifespan), with alice an ADMIN."""
    app = make_app(lifespan=opening(store), freshness=Freshness(store))
    with client_for(app) as client:
        client.portal.call(store.create_user, "alice", "ADMIN")
        yield client


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@asyncio_only
def test_store_query_counts(client: TestClient, store: RoleStore, clock: Clock) -> None:
    sign_in(client, "alice", "ADMIN")
    start, queries = clock.now, store.queries
    for _ in range(100):
        assert client.get("/me").json()["id"] == "alice"
    assert store.queries == queries  # ordinary requests: zero
    for window in range(1, 4):  # many requests inside each window: one query each
        clock.now = start + 300 * window
        for _ in range(50):
            assert client.get("/me").json()["role"] == "ADMIN"
        assert store.queries == queries + window

    # A client that never stores the new cookie costs no more.
    cookie = stale_cookie("alice", "ADMIN", 1, age=400)
    before = store.queries
    for _ in range(50):
        response = client.portal.call(asgi_get, client.app, "/me", [(b"cookie", cookie.encode())])
        assert response.json()["id"] == "alice"
    assert store.queries - before <= 1


@asyncio_only
def test_store_fifty_concurrent_requests_make_one_query(client: TestClient,
                                                        store: RoleStore) -> None:
    before = store.queries
    statuses = client.portal.call(many, client.app, stale_cookie("alice", "ADMIN", 1), 50)
    assert statuses == [200] * 50
    assert store.queries == before + 1


@asyncio_only
def test_store_changes_publish_to_the_default_feed(client: TestClient, store: RoleStore,
                                                   clock: Clock) -> None:
    run = client.portal.call
    sign_in(client, "alice", "ADMIN", version="1")
    run(update_user_role, store, "alice", "USER")
    body = client.get("/me").json()
    assert (body["role"], body["version"], body["chk"]) == ("USER", 2, int(time.time()))
    run(revoke_sessions, store, "alice")
    assert client.get("/me").json()["id"] is None
    sign_in(client, "alice", "ADMIN", version="3")
    run(store.set_disabled, "alice", True)
    assert client.get("/me").json()["id"] is None


@asyncio_only
def test_store_two_role_changes_keep_the_newest_role(client: TestClient, store: RoleStore,
                                                     clock: Clock) -> None:
    run = client.portal.call
    sign_in(client, "alice", "ADMIN", version="1")
    run(update_user_role, store, "alice", "USER")
    run(update_user_role, store, "alice", "ORG_ADMIN")
    assert client.get("/me").json()["role"] == "ORG_ADMIN"
    run(update_user_role, store, "alice", "ADMIN")  # the same role as at sign-in
    run(update_user_role, store, "alice", "ADMIN")
    body = client.get("/me").json()
    assert (body["role"], body["version"], body["chk"]) == ("ADMIN", 5, int(time.time()))


@asyncio_only
@pytest.mark.parametrize("order", ["revoke first", "role change first"])
def test_store_revocation_with_a_role_change_signs_out(client: TestClient, store: RoleStore,
                                                       order: str) -> None:
    run = client.portal.call
    sign_in(client, "alice", "ADMIN", version="1")
    if order == "revoke first":
        run(revoke_sessions, store, "alice")
        run(update_user_role, store, "alice", "USER")
    else:
        run(update_user_role, store, "alice", "USER")
        run(revoke_sessions, store, "alice")
    assert signed_out(client.get("/me"))


@asyncio_only
def test_store_sign_in_after_a_revocation_stays(client: TestClient, store: RoleStore,
                                                clock: Clock) -> None:
    run = client.portal.call
    revoked = run(revoke_sessions, store, "alice")
    assert revoked.revoked_at is not None
    clock.now = int(revoked.revoked_at.timestamp()) + 1  # a sign-in after the revocation
    sign_in(client, "alice", "ADMIN", version="2")
    run(update_user_role, store, "alice", "USER")  # the feed makes it revalidate
    response = client.get("/me")
    assert response.json()["role"] == "USER" and "set-cookie" in response.headers
    clock.now += 300  # and on the periodic check
    assert client.get("/me").json()["role"] == "USER"


@asyncio_only
def test_store_stopped(client_for: Client, own_postgres: PostgresServer, clock: Clock,
                       caplog: pytest.LogCaptureFixture) -> None:
    store = RoleStore(own_postgres.dsn)
    freshness = Freshness(store, clock=clock)  # retry_after on the fake clock too
    keep = make_app(lifespan=opening(store), freshness=freshness)
    signout = make_app(freshness=Freshness(store, on_store_error="signout"))
    with client_for(keep) as c:
        c.portal.call(store.create_user, "alice", "ADMIN")
        sign_in(c, "alice", "ADMIN")
        start = clock.now
        own_postgres.stop()
        for _ in range(20):  # ordinary requests: served from the cookie
            assert c.get("/me").json()["role"] == "ADMIN"

        clock.now = start + 400  # revalidation due, the store is down
        for _ in range(20):
            response = c.get("/me")
            assert response.json()["role"] == "ADMIN"  # "keep": current claims
            assert "set-cookie" not in response.headers  # chk stays old: retried
        failures = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(failures) == 1  # logged once

        cookie = stale_cookie("alice", "ADMIN", 1)
        response = c.portal.call(asgi_get, signout, "/me", [(b"cookie", cookie.encode())])
        assert response.json()["id"] is None and expires_session(response.set_cookies)

        own_postgres.start()
        clock.now += freshness.retry_after  # the next probe finds it back
        response = c.get("/me")
        assert response.json()["id"] == "alice" and "set-cookie" in response.headers
