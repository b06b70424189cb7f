"""The session registry on a real PostgreSQL: the store's SQL, and two uvicorn processes
on one database, where a session revoked through one is refused by the other within a
second (and the time it takes, p50/p95 over 30 revocations, printed with ``-s``).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from asgi_jwt_session.store import RoleStore, StoredSession
from support.servers import PostgresServer
from tests.app_processes import App
from tests.app_processes import start_app as start_processes_app
from tests.conftest import SECRET

REVOCATIONS = 30

pytestmark = pytest.mark.postgres


def row(session_id: str, user_id: str, *, ends_in: timedelta = timedelta(days=2),
        user_agent: str | None = None) -> StoredSession:
    now = datetime.now(UTC)
    return StoredSession(session_id, user_id, now, now, now + min(ends_in, timedelta(days=1)),
                         now + ends_in, user_agent, "203.0.113.0/24")


async def ids(store: RoleStore) -> list[str]:
    """Every row's id, as the table holds them."""
    assert store.sessions is not None
    found = await store.database.fetch_all(f"SELECT id FROM {store.sessions.name} ORDER BY id")
    return [record[0] for record in found]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_store_sql(postgres: PostgresServer, table: str) -> None:
    async with RoleStore(postgres.dsn, table=table, sessions_table=f"{table}_sessions") as store:
        await store.create_tables()
        await store.create_tables()  # again: nothing to do
        for user_id in ("alice", "bob"):
            await store.create_user(user_id, "USER")
        changes: list[tuple[str, int]] = []
        store.on_change.append(lambda user: changes.append((user.id, user.session_version)))

        queries = store.queries
        await store.record_session(row("a1", "alice", user_agent="Firefox"), first=True)
        assert store.queries == queries + 3  # upsert, prune, cap check
        await store.record_session(row("a2", "alice"), first=False)
        await store.record_session(row("old", "alice", ends_in=-timedelta(hours=2)), first=False)
        await store.record_session(row("a1", "bob", user_agent="taken over?"), first=False)
        [a2, a1] = await store.list_sessions("alice")  # "old" has expired; a2 renewed last
        assert (a1.id, a1.user_id, a1.user_agent) == ("a1", "alice", "Firefox")  # not bob's
        assert a2.id == "a2" and await store.list_sessions("bob") == []
        assert "old" in await ids(store)
        await store.record_session(row("a3", "alice"), first=True)  # a sign-in prunes "old"
        assert await ids(store) == ["a1", "a2", "a3"]

        queries = store.queries
        assert await store.revoke_session("a1", user_id="bob") is False
        assert await store.revoke_session("nope") is False
        assert changes == []
        assert await store.revoke_session("a1", user_id="alice") is True
        assert store.queries == queries + 4
        assert changes == [("alice", 2)]
        alice = await store.get_user("alice")
        assert alice is not None and alice.revoked_sessions == frozenset({"a1"})
        assert {s.id for s in await store.list_sessions("alice")} == {"a2", "a3"}

        queries = store.queries
        alice = await store.revoke_other_sessions("alice", "a2")
        assert store.queries == queries + 3
        assert alice.revoked_at is not None and alice.session_version == 3
        alice = await store.get_user("alice")
        # Ended by revoked_at (signed in before it): no revoked id left to read.
        assert alice is not None and alice.revoked_sessions == frozenset()
        assert [s.id for s in await store.list_sessions("alice")] == ["a2"]

        assert await store.revoke_all_sessions() == 2
        assert await store.list_sessions("alice") == []
        bob = await store.get_user("bob")
        assert bob is not None and bob.revoked_at is not None and bob.session_version == 2
        assert changes[-2:] in ([("alice", 4), ("bob", 2)], [("bob", 2), ("alice", 4)])


# --- two uvicorn processes --------------------------------------------------------------------


def start_app(env: dict[str, str]) -> App:
    return start_processes_app("tests.registry_app", env)


@pytest.fixture
def apps(postgres: PostgresServer) -> Iterator[tuple[App, App]]:
    table = f"users_{uuid.uuid4().hex[:12]}"

    async def seed() -> None:
        async with RoleStore(postgres.dsn, table=table, sessions_table=f"{table}_sessions") as s:
            await s.create_tables()
            await s.create_user("alice", "USER")
            await s.create_user("bob", "USER")
            await s.create_user("root", "ADMIN")

    asyncio.run(seed())
    env = {**os.environ, "REGISTRY_DSN": postgres.dsn, "REGISTRY_TABLE": table,
           "REGISTRY_SECRET": SECRET}
    started: list[App] = []
    try:
        started.append(start_app(env))
        started.append(start_app(env))
        yield started[0], started[1]
    finally:
        for app in started:
            app.process.terminate()
        for app in started:
            app.process.wait(10)


def until_refused(request: Callable[[], httpx.Response], bound: float = 1.0) -> float:
    """Repeat ``request`` until it answers 401; the seconds that took (fail past ``bound``)."""
    start = time.perf_counter()
    while True:
        response = request()
        elapsed = time.perf_counter() - start
        if response.status_code == 401:
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < bound, f"still signed in after {bound} s"


def sign_in(browser: httpx.Client, app: App, user: str = "alice") -> str:
    response = browser.post(f"{app.url}/login", params={"user": user})
    assert response.status_code == 200, response.text
    jti: str = response.json()["jti"]
    return jti


def test_a_revoked_session_is_refused_by_the_other_process(apps: tuple[App, App]) -> None:
    a, b = apps
    with httpx.Client() as laptop, httpx.Client() as phone, httpx.Client() as bob:
        victim = sign_in(phone, a)
        sign_in(laptop, a)
        sign_in(bob, b, "bob")
        for browser in (laptop, phone, bob):
            assert browser.get(f"{b.url}/me").status_code == 200  # A's cookies work on B

        # Ordinary requests make no query, in either process.
        before = (a.stats()["queries"], b.stats()["queries"])
        for app in (a, b) * 20:
            assert phone.get(f"{app.url}/me").status_code == 200
            assert laptop.get(f"{app.url}/me").status_code == 200
        assert (a.stats()["queries"], b.stats()["queries"]) == before

        # The phone's session, revoked through A: refused by B within a second.
        assert httpx.post(f"{a.url}/revoke-session", params={"id": victim}).json() == {
            "found": True}
        until_refused(lambda: phone.get(f"{b.url}/me"))
        assert phone.get(f"{a.url}/me").status_code == 401
        assert laptop.get(f"{b.url}/me").status_code == 200  # the other session stays
        assert bob.get(f"{b.url}/me").status_code == 200

        # Sign out other devices through B: the old phone cookie and a new one end on A.
        sign_in(phone, b)
        assert laptop.post(f"{b.url}/change-password").status_code == 200
        until_refused(lambda: phone.get(f"{a.url}/me"))
        assert laptop.get(f"{a.url}/me").status_code == 200
        listed = laptop.get(f"{a.url}/auth/sessions").json()["sessions"]
        assert [view["current"] for view in listed] == [True]


def test_time_for_a_revocation_to_reach_the_other_process(apps: tuple[App, App]) -> None:
    a, b = apps
    after_request: list[float] = []
    after_commit: list[float] = []
    with httpx.Client() as victim, httpx.Client() as survivor, httpx.Client() as admin:
        for _ in range(REVOCATIONS):
            jti = sign_in(victim, a)
            sign_in(survivor, a)
            assert victim.get(f"{b.url}/me").status_code == 200
            start = time.perf_counter()
            assert admin.post(f"{a.url}/revoke-session", params={"id": jti}).json()["found"]
            committed = time.perf_counter()
            until_refused(lambda: victim.get(f"{b.url}/me"))
            end = time.perf_counter()
            after_request.append(end - start)
            after_commit.append(end - committed)
            assert survivor.get(f"{b.url}/me").status_code == 200

    def ms(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000

    print(f"\nrevocation through A refused by B ({REVOCATIONS} revocations, PostgreSQL "
          f"LISTEN/NOTIFY): from the revoke request p50 {ms(after_request, 50):.1f} ms, "
          f"p95 {ms(after_request, 95):.1f} ms, max {max(after_request) * 1000:.1f} ms; "
          f"from its answer p50 {ms(after_commit, 50):.1f} ms, p95 {ms(after_commit, 95):.1f} ms")
    assert max(after_request) < 1.0


def test_a_copy_taken_before_sign_out_is_refused_by_the_other_process(apps: tuple[App, App]
                                                                      ) -> None:
    a, b = apps
    with httpx.Client() as laptop, httpx.Client() as phone:
        gone = sign_in(phone, a)
        sign_in(laptop, a)
        copy = {"cookie": f"session={phone.cookies['session']}"}  # taken before sign-out
        assert httpx.get(f"{b.url}/me", headers=copy).status_code == 200

        token = phone.get(f"{a.url}/auth/session").json()["csrfToken"]
        response = phone.post(f"{a.url}/auth/signout", headers={"x-csrf-token": token})
        assert response.json() == {"session": None}
        elapsed = until_refused(lambda: httpx.get(f"{b.url}/me", headers=copy))
        print(f"\na copy signed out through A refused by B after {elapsed * 1000:.1f} ms")
        assert httpx.get(f"{a.url}/me", headers=copy).status_code == 401
        assert laptop.get(f"{b.url}/me").status_code == 200  # the other device stays
        listed = laptop.get(f"{b.url}/auth/sessions").json()["sessions"]
        assert gone not in [view["id"] for view in listed] and len(listed) == 1


def test_a_copy_taken_before_stopping_an_impersonation_is_refused_everywhere(
        apps: tuple[App, App]) -> None:
    a, b = apps
    with httpx.Client() as admin:
        own = sign_in(admin, a, "root")
        assert admin.post(f"{a.url}/view-as", params={"user": "alice"}).status_code == 200
        copy = {"cookie": f"session={admin.cookies['session']}"}  # taken before the stop
        assert httpx.get(f"{b.url}/me", headers=copy).json()["id"] == "alice"

        response = admin.post(f"{a.url}/stop-view-as")
        assert response.json() == {"jti": own}
        assert admin.get(f"{b.url}/me").json()["id"] == "root"
        elapsed = until_refused(lambda: httpx.get(f"{b.url}/me", headers=copy))
        print(f"\na copy of a stopped impersonation refused by B after {elapsed * 1000:.1f} ms")
        assert httpx.post(f"{b.url}/stop-view-as", headers=copy).status_code == 401
        assert httpx.post(f"{a.url}/stop-view-as", headers=copy).status_code == 401
        assert admin.get(f"{a.url}/me").json()["id"] == "root"  # the admin stays
