"""Freshness under faults, without a database server: the outage policy on a fake clock,
the version feed's pruning, the 503 answer for the app's own store calls, and a SQLite
store that connects once its database appears.

The PostgreSQL faults (a real server stopped and started) are in
``test_reliability_postgres.py``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.lowlevel
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import JWTSessionMiddleware, StoreUnavailable, auth, login
from asgi_jwt_session.freshness import CheckedUser, Freshness, PostgresVersionFeed, VersionFeed
from asgi_jwt_session.freshness.feed import DEFAULT_MAX_AGE
from asgi_jwt_session.responses import exception_handlers, store_unavailable_handler
from asgi_jwt_session.session import Session, SessionUser
from asgi_jwt_session.store import Listener, StoredUser

pytestmark = pytest.mark.anyio

NOW = 1_700_000_000  # the requests' clock (time.time), whole seconds
SIGNED_IN = NOW - 400
FAULTS_SECRET = "faults-test-secret-0123456789abcdef-0123"


class FakeClock:
    """The policy's monotonic clock: stands still until moved."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """``{user_id: CheckedUser}``; ``fail`` loads raise ``error``; ``gate`` is waited for."""

    def __init__(self, **users: CheckedUser) -> None:
        self.users = dict(users)
        self.calls = 0
        self.fail = 0
        self.error: Exception = StoreUnavailable("connection refused")
        self.gate: anyio.Event | None = None

    async def __call__(self, user_id: str) -> CheckedUser | None:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise self.error
        return self.users.get(user_id)


def session(user_id: str = "alice", role: str = "ADMIN", version: int = 1,
            checked_at: int = SIGNED_IN) -> Session:
    return Session(user=SessionUser(user_id, role), version=version, checked_at=checked_at,
                   auth_time=SIGNED_IN, auth_ms=SIGNED_IN * 1000)


def policy(loader: Loader, clock: FakeClock, **options: Any) -> Freshness:
    return Freshness(loader, revalidate_after=300, clock=clock, **options)


# --- issue 11, item 1: one failed load delays only what it must ------------------------------


async def test_a_revocation_is_applied_within_retry_after_of_one_failed_load() -> None:
    """Old code: one StoreUnavailable switched revalidation off for 30 s, for everyone."""
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("ADMIN", 2, revoked_at=NOW - 10))
    freshness = policy(loader, clock)
    freshness.feed.publish("alice", 2)  # the revocation, announced
    loader.fail = 1  # one blip; the database is fine a moment later

    first = session()
    await freshness.revalidate(first, NOW)
    assert first.user is not None  # "keep": served from the cookie during the blip
    assert not freshness.reachable and loader.calls == 1

    clock.now += 0.5  # inside retry_after: no query, the cookie still serves
    during = session()
    await freshness.revalidate(during, NOW)
    assert during.user is not None and loader.calls == 1

    clock.now += 0.5  # retry_after (1 s) after the failure: the next stale request probes
    after = session()
    await freshness.revalidate(after, NOW + 1)
    assert after.user is None and after.modified  # signed out: the revocation holds
    assert freshness.reachable and loader.calls == 2


async def test_the_first_success_ends_the_outage_for_every_user() -> None:
    clock = FakeClock()
    users = {name: CheckedUser("USER", 2) for name in ("alice", "bob", "carol")}
    loader = Loader(**users)
    freshness = policy(loader, clock)
    loader.fail = 1
    await freshness.revalidate(session("alice"), NOW)
    clock.now += freshness.retry_after
    demoted = [session(name) for name in users]
    for s in demoted:
        await freshness.revalidate(s, NOW)
    # One probe (alice's) succeeded: bob and carol load at once, nobody waits 30 s.
    assert all(s.user is not None and s.user.role == "USER" for s in demoted)
    assert loader.calls == 1 + 3


async def test_refresh_ends_the_outage() -> None:
    """The refresh endpoint's load succeeding is the database answering: revalidation
    resumes at once instead of refusing what the endpoint already knows."""
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("USER", 2))
    freshness = policy(loader, clock)
    loader.fail = 1
    await freshness.revalidate(session(), NOW)
    assert not freshness.reachable
    refreshed = session()
    await freshness.refresh(refreshed, NOW)
    assert refreshed.user is not None and refreshed.user.role == "USER"
    assert freshness.reachable
    other = session("alice", version=1)
    freshness.feed.publish("alice", 3)
    loader.users["alice"] = CheckedUser("USER", 3)
    await freshness.revalidate(other, NOW)  # no retry_after to wait: reachable
    assert other.version == 3


async def test_a_committed_change_ends_the_outage() -> None:
    clock = FakeClock()
    store = FakeStore("ADMIN")
    freshness = Freshness(store, revalidate_after=300, clock=clock)
    store.fail = True
    await freshness.revalidate(session(), NOW)
    assert not freshness.reachable
    store.fail = False
    changed = await store.update_user_role("alice", "USER")  # the database took a write
    assert freshness.reachable
    s = session()
    await freshness.revalidate(s, NOW)  # no wait for retry_after
    assert s.user is not None and s.user.role == "USER" and s.version == changed.session_version


async def test_the_feed_connecting_again_ends_the_outage() -> None:
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("USER", 2))
    feed = ListeningFeed()
    freshness = policy(loader, clock, feed=feed)
    assert feed.on_connect == [freshness.answered]
    loader.fail = 1
    await freshness.revalidate(session(), NOW)
    assert not freshness.reachable
    feed.publish("alice", 2)  # what a catch-up after the reconnect announces
    for callback in feed.on_connect:
        callback()
    s = session()
    await freshness.revalidate(s, NOW)
    assert s.user is not None and s.user.role == "USER" and loader.calls == 2


async def test_one_probe_at_a_time_while_unreachable() -> None:
    """A frozen database: one stale request waits for the probe's timeout, the others
    are answered at once (old code: every user's request waited the full timeout)."""
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("ADMIN", 1), bob=CheckedUser("ADMIN", 1))
    freshness = policy(loader, clock)
    loader.fail = 1
    await freshness.revalidate(session("alice"), NOW)
    clock.now += freshness.retry_after
    loader.gate = anyio.Event()  # the probe hangs
    bobs = [session("bob") for _ in range(10)]
    async with anyio.create_task_group() as tg:
        tg.start_soon(freshness.revalidate, session("alice"), NOW)
        await anyio.wait_all_tasks_blocked()
        assert freshness.probing
        for s in bobs:
            with anyio.fail_after(1):
                await freshness.revalidate(s, NOW)  # no wait behind the probe
        assert loader.calls == 2  # the first failure and the running probe
        loader.gate.set()
    assert not freshness.probing and freshness.reachable
    assert all(s.user is not None for s in bobs)


async def test_a_slow_probe_counts_as_a_failure_and_says_why(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "asgi_jwt_session.freshness")
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("ADMIN", 1))
    loader.gate = anyio.Event()  # never set: a database that does not answer
    freshness = policy(loader, clock, timeout=0.05)
    s = session()
    await freshness.revalidate(s, NOW)
    assert s.user is not None and not freshness.reachable and not freshness.probing
    (record,) = caplog.records
    assert record.getMessage().endswith("no answer within 0.05s")


@pytest.mark.parametrize("error", [StoreUnavailable(), OSError(), StoreUnavailable("")])
async def test_the_unreachable_warning_always_has_a_reason(
        error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "asgi_jwt_session.freshness")
    loader = Loader(alice=CheckedUser("ADMIN", 1))
    loader.fail, loader.error = 1, error
    await policy(loader, FakeClock()).revalidate(session(), NOW)
    (record,) = caplog.records
    message = record.getMessage()
    assert not message.rstrip().endswith(":")
    assert message.endswith(repr(error))


# --- item 2: "signout" stops signing out once the database answers --------------------------


async def test_signout_signs_out_nobody_once_the_store_answers() -> None:
    """Old code: sessions were signed out for ~30 s after the database was back. With
    "signout" every stale request probes (one at a time), so the first one after the
    database answers ends the outage: the policy's clock never moves here."""
    loader = Loader(alice=CheckedUser("ADMIN", 1))
    freshness = policy(loader, FakeClock(), on_store_error="signout")
    assert freshness.retry_after == 0
    loader.fail = 5  # the database is down for five requests
    outage = [session() for _ in range(5)]
    for s in outage:
        await freshness.revalidate(s, NOW)
    assert freshness.signed_out == 5 and all(s.user is None for s in outage)
    assert loader.calls == 5  # each of them tried

    after = [session() for _ in range(50)]  # the database answers again
    for s in after:
        await freshness.revalidate(s, NOW)
    assert freshness.signed_out == 5  # not one more
    assert all(s.user is not None and s.user.role == "ADMIN" for s in after)
    assert freshness.reachable and loader.calls == 6  # then remembered


async def test_signout_with_retry_after_stops_at_the_next_probe() -> None:
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("ADMIN", 1))
    freshness = policy(loader, clock, on_store_error="signout", retry_after=1)
    loader.fail = 2  # the first load and one probe fail
    for _ in range(5):
        await freshness.revalidate(session(), NOW)
    clock.now += 1
    await freshness.revalidate(session(), NOW)
    assert freshness.signed_out == 6 and loader.calls == 2
    clock.now += 1  # the next probe succeeds: the outage is over
    after = [session() for _ in range(50)]
    for s in after:
        clock.now += 0.1
        await freshness.revalidate(s, NOW)
    assert freshness.signed_out == 6
    assert all(s.user is not None for s in after) and loader.calls == 3


async def test_keep_probes_once_a_second_by_default() -> None:
    clock = FakeClock()
    loader = Loader(alice=CheckedUser("ADMIN", 1))
    freshness = policy(loader, clock)
    assert freshness.retry_after == 1.0
    loader.fail = 100
    for _ in range(40):  # 4 s of stale requests, ten a second
        await freshness.revalidate(session(), NOW)
        clock.now += 0.1
    assert 4 <= loader.calls <= 5


# --- item 6: the feed prunes without a publish, and keeps only what the policy needs --------


def test_the_feed_prunes_without_a_publish() -> None:
    """Old code pruned only on publish: 38,000 expired entries stayed in memory."""
    clock = FakeClock()
    feed = VersionFeed(60, clock=clock)
    for i in range(1000):
        feed.publish(f"user{i}", 2)
    clock.now += 30
    feed.publish("late", 2)
    clock.now += 30.5  # the first thousand have expired; nothing is published now
    assert feed.newest("user1") is None
    assert set(feed.versions) == {"late"} and set(feed.published) == {"late"}
    clock.now += 30
    assert feed.newest("anyone") is None and feed.versions == {}
    assert feed.prune_at == float("inf")  # empty: lookups read no clock


def test_lookups_prune_at_most_once_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    feed = VersionFeed(10, clock=clock)
    prunes: list[float] = []
    prune = feed.prune

    def counting(now: float | None = None) -> None:
        prunes.append(clock.now)
        prune(now)

    monkeypatch.setattr(feed, "prune", counting)
    start = clock.now
    for i in range(100):  # a change every 0.1 s
        clock.now = start + i / 10
        feed.publish(f"user{i}", 2)
    prunes.clear()
    for i in range(300):  # 3 s of lookups, 100 a second, while an entry expires every 0.1 s
        clock.now = start + 10 + i / 100
        feed.newest("someone")
    assert 2 <= len(prunes) <= 3  # at most once a second
    assert 70 <= len(feed.versions) <= 90
    clock.now += 20
    for _ in range(1000):
        feed.newest("someone")
    assert feed.versions == {}


def test_len_prunes() -> None:
    clock = FakeClock()
    feed = VersionFeed(5, clock=clock)
    feed.publish("alice", 2)
    assert len(feed) == 1
    clock.now += 6
    assert len(feed) == 0


def test_a_feed_without_max_age_keeps_what_its_policies_need() -> None:
    feed = VersionFeed()
    assert feed.max_age == DEFAULT_MAX_AGE  # no policy uses it yet
    Freshness(Loader(), revalidate_after=300, feed=feed)
    assert feed.max_age == 360  # revalidate_after plus a minute
    Freshness(Loader(), revalidate_after=60, feed=feed)
    assert feed.max_age == 360  # the longest any policy needs
    Freshness(Loader(), revalidate_after=None, feed=feed)
    assert feed.max_age == DEFAULT_MAX_AGE  # a feed-only policy needs the token lifetime
    own = VersionFeed(5)
    Freshness(Loader(), revalidate_after=300, feed=own)
    assert own.max_age == 5  # a max_age given is kept
    made = Freshness(Loader(), revalidate_after=120).feed
    assert isinstance(made, VersionFeed) and made.max_age == 180


def test_the_postgres_feed_catches_up_only_as_far_back_as_the_policy_needs() -> None:
    """Old code: 30 days of changes on start (6.4 s for 100,000, past start()'s 5 s)."""
    from asgi_jwt_session.store import RoleStore

    store = RoleStore("postgresql://app@db.invalid/app")  # not connected: nothing runs
    feed = PostgresVersionFeed(store)
    assert feed.max_age == DEFAULT_MAX_AGE
    Freshness(store, feed=feed)
    assert feed.max_age == 360
    assert PostgresVersionFeed(store, max_age=3600).max_age == 3600
    assert feed.max_backoff == 1.0  # reconnects within a second of the database
    query = store.versions_since_query()
    assert query.startswith("SELECT users.id, users.session_version")
    assert "$1" in query


# --- item 7: a 503 with Retry-After for the app's own store calls ---------------------------


async def sign_in_form(request: Request) -> JSONResponse:
    raise StoreUnavailable("role store unavailable: connection refused")


async def admin_socket(websocket: WebSocket) -> None:
    raise StoreUnavailable("role store unavailable: connection refused")


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    return JSONResponse({"id": session.user.id if session and session.user else None})


async def sign_in(request: Request) -> JSONResponse:
    login(request, "alice", "ADMIN", version=1)
    return JSONResponse({})


def unavailable_app(outside: bool = False) -> Any:
    routes = [Route("/sign-in", sign_in_form, methods=["GET", "POST"]),
              Route("/login", sign_in), Route("/me", me),
              WebSocketRoute("/ws", admin_socket)]
    if outside:  # the middleware wraps the whole app
        return JWTSessionMiddleware(Starlette(routes=routes, exception_handlers=exception_handlers),
                                    secret_key=FAULTS_SECRET)
    return Starlette(routes=routes, exception_handlers=exception_handlers,
                     middleware=[Middleware(JWTSessionMiddleware, secret_key=FAULTS_SECRET)])


@pytest.mark.parametrize("outside", [False, True])
def test_store_unavailable_is_a_503_with_retry_after(
        outside: bool, anyio_backend: Literal["asyncio", "trio"],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "asgi_jwt_session")
    with TestClient(unavailable_app(outside), backend=anyio_backend) as client:
        api = client.post("/sign-in", headers={"accept": "application/json"})
        assert api.status_code == 503
        assert api.headers["retry-after"] == "5"
        assert api.json() == {"detail": "The database cannot be reached just now; "
                                        "try again later"}
        assert "connection refused" not in api.text  # the cause goes to the log only
        page = client.get("/sign-in", headers={"accept": "text/html,*/*;q=0.8"})
        assert page.status_code == 503 and page.headers["retry-after"] == "5"
        assert page.headers["content-type"].startswith("text/html")
        assert "503 Service Unavailable" in page.text
        assert "accept" in page.headers["vary"].lower()
        fetch = client.get("/sign-in", headers={"accept": "*/*"})
        assert fetch.status_code == 503 and fetch.headers["content-type"] == "application/json"
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):
            pass
        assert closed.value.status_code == 503  # the server's denial response
        # The session is untouched by the store's outage.
        client.get("/login")
        assert client.get("/me").json() == {"id": "alice"}
    assert any("connection refused" in r.getMessage() for r in caplog.records)


async def test_the_handler_is_in_exception_handlers() -> None:
    assert exception_handlers[StoreUnavailable] is store_unavailable_handler


# --- item 3, with SQLite: the store connects once its database can be opened ----------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_sqlite_store_connects_in_the_background(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from asgi_jwt_session.store import RoleStore

    before = worker_threads()
    caplog.set_level(logging.WARNING, "asgi_jwt_session")
    folder = tmp_path / "not-yet"
    store = RoleStore(f"sqlite:///{folder / 'roles.db'}", connect_retry=0.2)
    app = Starlette(routes=[Route("/me", me), Route("/login", sign_in)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=FAULTS_SECRET,
                                           freshness=Freshness(store))])
    async with store:  # the documented lifespan: it does not raise
        assert not store.is_connected
        with pytest.raises(StoreUnavailable, match="not connected yet"):
            await store.get_user("alice")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.get("/login")
            assert (await client.get("/me")).json() == {"id": "alice"}  # from the cookie
        folder.mkdir()  # the database can be opened now
        with anyio.fail_after(10):
            while not store.is_connected:
                await anyio.sleep(0.02)
        await store.create_tables()
        await store.create_user("alice", "USER")
        assert (await store.get_user("alice")) is not None
    assert not store.is_connected
    await aiosqlite_threads_done(before)
    messages = [r.getMessage() for r in caplog.records]
    assert any("connecting in the background" in m for m in messages)
    assert any(m.startswith("role store connected after") for m in messages)
    assert messages.index(next(m for m in messages if "background" in m)) < messages.index(
        next(m for m in messages if m.startswith("role store connected")))


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_connect_retry_none_raises(tmp_path: Path) -> None:
    from asgi_jwt_session.store import RoleStore

    before = worker_threads()
    store = RoleStore(f"sqlite:///{tmp_path / 'missing' / 'roles.db'}", connect_retry=None)
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        await store.connect()
    with pytest.raises(RuntimeError, match="not connected"):
        await store.get_user("alice")
    await aiosqlite_threads_done(before)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_disconnect_stops_the_background_connect(tmp_path: Path) -> None:
    from asgi_jwt_session.store import RoleStore

    before = worker_threads()
    store = RoleStore(f"sqlite:///{tmp_path / 'missing' / 'roles.db'}", connect_retry=0.05)
    await store.connect()
    task = store._connecting
    assert task is not None
    await store.disconnect()
    assert task.done() and store._connecting is None
    with pytest.raises(RuntimeError, match="not connected"):
        await store.get_user("alice")
    await aiosqlite_threads_done(before)


# --- helpers ---------------------------------------------------------------------------------


def worker_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


async def aiosqlite_threads_done(before: set[threading.Thread]) -> None:
    """aiosqlite stops its worker thread after a failed connect without waiting for it;
    let the test's own threads finish while the event loop still runs (threads of
    connections other tests keep open are not the test's)."""
    with anyio.fail_after(5):
        while worker_threads() - before:
            await anyio.sleep(0.01)


class ListeningFeed(VersionFeed):
    """A feed that reports its (re)connections, as PostgresVersionFeed does."""

    def __init__(self) -> None:
        super().__init__()
        self.on_connect: list[Callable[[], object]] = []


class FakeStore:
    """One user in memory (a :class:`Store`) whose reads fail while ``fail`` is set."""

    def __init__(self, role: str) -> None:
        self.alice = StoredUser("alice", None, role, 1, datetime.now(UTC))
        self.fail = False
        self.on_change: list[Listener] = []

    async def get_user(self, user_id: str) -> StoredUser | None:
        await anyio.lowlevel.checkpoint()
        if self.fail:
            raise StoreUnavailable("connection refused")
        return self.alice if user_id == "alice" else None

    async def create_user(self, user_id: str, role: str, *, email: str | None = None
                          ) -> StoredUser:
        raise NotImplementedError

    async def update_user_role(self, user_id: str, role: str) -> StoredUser:
        return await self.change(role=role)

    async def revoke_sessions(self, user_id: str) -> StoredUser:
        return await self.change(revoked_at=datetime.now(UTC))

    async def set_disabled(self, user_id: str, disabled: bool) -> StoredUser:
        return await self.change(disabled=disabled)

    async def change(self, **values: Any) -> StoredUser:
        self.alice = replace(self.alice, session_version=self.alice.session_version + 1,
                             updated_at=datetime.now(UTC), **values)
        for listener in self.on_change:
            result = listener(self.alice)
            if result is not None:
                await result
        return self.alice
