"""Two uvicorn processes on loopback share one PostgreSQL: a role change or a
revocation made through one is seen by the other on the user's next request.

Real processes, real sockets, real cookies (httpx), the PostgreSQL LISTEN/NOTIFY feed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from asgi_jwt_session.store import RoleStore
from support.servers import PostgresServer
from tests.app_processes import App
from tests.app_processes import start_app as start_processes_app
from tests.conftest import SECRET


def start_app(env: dict[str, str]) -> App:
    return start_processes_app("tests.freshness_app", env)


@pytest.fixture
def apps(postgres: PostgresServer) -> Iterator[tuple[App, App]]:
    table = f"users_{uuid.uuid4().hex[:12]}"

    async def seed() -> None:
        async with RoleStore(postgres.dsn, table=table) as store:
            await store.create_tables()
            await store.create_user("alice", "ADMIN")
            await store.create_user("bob", "USER")

    asyncio.run(seed())
    env = {**os.environ, "FRESHNESS_DSN": postgres.dsn, "FRESHNESS_TABLE": table,
           "FRESHNESS_SECRET": SECRET}
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


def within_one_second(request: Callable[[], httpx.Response], status: int) -> httpx.Response:
    """Repeat ``request`` until it answers ``status``; fail after one second."""
    deadline = time.monotonic() + 1.0
    while True:
        response = request()
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, (
            f"still {response.status_code} after 1 s, expected {status}")
        time.sleep(0.01)


def test_role_change_and_revocation_reach_the_other_process(apps: tuple[App, App]) -> None:
    a, b = apps
    with httpx.Client() as browser, httpx.Client() as admin_console:
        assert browser.post(f"{a.url}/login", params={"user": "alice"}).status_code == 200
        assert browser.get(f"{b.url}/admin").status_code == 200  # A's cookie works on B

        # Ordinary requests make no query, in either process.
        before = (a.queries(), b.queries())
        for app in (a, b, a, b) * 10:
            assert browser.get(f"{app.url}/admin").status_code == 200
        assert (a.queries(), b.queries()) == before

        # Demote through A: alice's next request to B is refused.
        demoted = admin_console.post(f"{a.url}/set-role", params={"user": "alice", "role": "USER"})
        assert demoted.status_code == 200
        within_one_second(lambda: browser.get(f"{b.url}/admin"), 403)
        assert browser.get(f"{b.url}/me").json() == {"id": "alice", "role": "USER"}
        assert browser.get(f"{a.url}/admin").status_code == 403
        for _ in range(20):  # the re-issued cookie carries the new role: no more queries
            assert browser.get(f"{b.url}/admin").status_code == 403
        assert b.queries() == before[1] + 1  # the one revalidation

        # Promote through A: seen likewise.
        admin_console.post(f"{a.url}/set-role", params={"user": "alice", "role": "ADMIN"})
        within_one_second(lambda: browser.get(f"{b.url}/admin"), 200)
        assert browser.get(f"{a.url}/admin").status_code == 200

        # Revoke through B: the same cookie is signed out by both processes.
        cookies = dict(browser.cookies)
        admin_console.post(f"{b.url}/revoke", params={"user": "alice"})
        for app in (a, b):
            with httpx.Client(cookies=cookies) as stolen:
                response = within_one_second(lambda: stolen.get(f"{app.url}/me"), 401)  # noqa: B023
                assert "session=" in response.headers.get("set-cookie", "")  # expired
                assert stolen.get(f"{app.url}/me").status_code == 401
        assert browser.get(f"{a.url}/me").status_code == 401


def test_other_users_are_untouched(apps: tuple[App, App]) -> None:
    a, b = apps
    with httpx.Client() as alice, httpx.Client() as bob:
        alice.post(f"{a.url}/login", params={"user": "alice"})
        bob.post(f"{a.url}/login", params={"user": "bob"})
        httpx.post(f"{a.url}/revoke", params={"user": "alice"})
        within_one_second(lambda: alice.get(f"{b.url}/me"), 401)
        before = b.queries()
        assert bob.get(f"{b.url}/me").json() == {"id": "bob", "role": "USER"}
        assert b.queries() == before
