"""PostgresVersionFeed on a real PostgreSQL server: notify, catch-up, reconnect.

asyncio only: asyncpg and `databases` are asyncio-only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import asyncpg
import pytest

from asgi_jwt_session.freshness import PostgresVersionFeed
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role
from support.servers import PostgresServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stores(postgres: PostgresServer, table: str) -> AsyncIterator[tuple[RoleStore, ...]]:
    """Three stores on one table, as three processes would have."""
    async with RoleStore(postgres.dsn, table=table) as a, \
            RoleStore(postgres.dsn, table=table) as b, \
            RoleStore(postgres.dsn, table=table) as c:
        await a.create_tables()
        await a.create_user("alice", "ADMIN")
        yield a, b, c


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.01)


async def terminate(dsn: str, pid: int | None) -> None:
    assert pid is not None
    connection = await asyncpg.connect(dsn)
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


class GatedConnect:
    """Lets the feed connect only while ``open`` is set."""

    def __init__(self, feed: PostgresVersionFeed) -> None:
        self.connect = feed.connect
        self.open = anyio.Event()
        self.open.set()
        self.attempts = 0

    async def __call__(self, dsn: str, **kwargs: Any) -> Any:
        self.attempts += 1
        await self.open.wait()
        return await self.connect(dsn, **kwargs)


async def test_change_in_one_process_reaches_another(stores: tuple[RoleStore, ...]) -> None:
    a, b, _ = stores
    async with PostgresVersionFeed(a) as feed_a, PostgresVersionFeed(b) as feed_b:
        assert feed_a.connected.is_set() and feed_b.connected.is_set()
        assert feed_b.newest("alice") == 1  # caught up on start: the user was created
        updated = await update_user_role(a, "alice", "USER")
        assert feed_a.newest("alice") == updated.session_version  # at once, locally
        await eventually(lambda: feed_b.newest("alice") == updated.session_version)
        revoked = await revoke_sessions(b, "alice")
        await eventually(lambda: feed_a.newest("alice") == revoked.session_version)
    assert feed_a.task is None and feed_a.connection is None


async def test_catch_up_on_start(stores: tuple[RoleStore, ...]) -> None:
    a, b, _ = stores
    updated = await a.update_user_role("alice", "USER")  # before any feed runs
    async with PostgresVersionFeed(b, max_age=3600) as feed:
        assert feed.newest("alice") == updated.session_version


async def test_reconnects_and_catches_up_after_the_connection_is_killed(
    postgres: PostgresServer, stores: tuple[RoleStore, ...]
) -> None:
    a, _, silent = stores  # `silent` has no feed: its changes notify nobody
    feed = PostgresVersionFeed(a, min_backoff=0.01)
    gate = GatedConnect(feed)
    feed.connect = gate
    async with feed:
        first_pid = feed.backend_pid
        gate.open = anyio.Event()  # closed: the next connect waits
        await terminate(postgres.dsn, first_pid)
        await eventually(lambda: not feed.connected.is_set() and gate.attempts == 2)
        changed = await silent.update_user_role("alice", "USER")  # while it is down
        assert feed.newest("alice") == 1  # caught up on start: created
        gate.open.set()
        await eventually(lambda: feed.connected.is_set())
        assert feed.connections == 2 and feed.backend_pid != first_pid
        assert feed.newest("alice") == changed.session_version  # caught up


async def test_notify_while_down_is_sent_after_reconnect(
    postgres: PostgresServer, stores: tuple[RoleStore, ...]
) -> None:
    a, b, _ = stores
    async with PostgresVersionFeed(a, min_backoff=0.01) as feed_a, \
            PostgresVersionFeed(b) as feed_b:
        gate = GatedConnect(feed_a)
        feed_a.connect = gate
        gate.open = anyio.Event()
        await terminate(postgres.dsn, feed_a.backend_pid)
        await eventually(lambda: not feed_a.connected.is_set())
        changed = await a.update_user_role("alice", "USER")  # a's feed cannot notify now
        assert feed_a.newest("alice") == changed.session_version
        assert feed_a.pending == {"alice": changed.session_version}
        await anyio.sleep(0.1)
        assert feed_b.newest("alice") == 1  # b stays connected: only a notify tells it
        gate.open.set()
        await eventually(lambda: feed_b.newest("alice") == changed.session_version)
        assert feed_a.pending == {}


async def test_ignores_foreign_payloads(postgres: PostgresServer,
                                        stores: tuple[RoleStore, ...]) -> None:
    a, _, _ = stores
    async with PostgresVersionFeed(a) as feed:
        connection = await asyncpg.connect(postgres.dsn)
        try:
            for payload in ("not json", '{"id": 1, "ver": 2}', "[]", '{"id": "bob"}',
                            '{"id": "bob", "ver": 4}'):
                await connection.execute("SELECT pg_notify($1, $2)", feed.channel, payload)
        finally:
            await connection.close()
        await eventually(lambda: feed.newest("bob") == 4)
        assert set(feed.versions) == {"alice", "bob"}


async def test_connects_with_databases_options_in_the_url(postgres: PostgresServer,
                                                          table: str) -> None:
    # `databases` reads min_size, max_size and ssl itself; sent to the server as
    # settings they would be refused. application_name is a real libpq option.
    url = f"{postgres.dsn}?min_size=1&max_size=5&ssl=false&application_name=ajs-feed"
    async with RoleStore(url, table=table) as store:
        await store.create_tables()
        await store.create_user("alice", "ADMIN")
        feed = PostgresVersionFeed(store, min_backoff=0.01)
        await feed.start(wait=5)
        try:
            assert feed.connected.is_set() and feed.connections == 1
            assert feed.newest("alice") == 1  # caught up
            async with feed.lock:
                name = await feed.connection.fetchval("SHOW application_name")
            assert name == "ajs-feed"
        finally:
            await feed.stop()


def test_needs_postgres(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="PostgreSQL"):
        PostgresVersionFeed(RoleStore(f"sqlite:///{tmp_path / 'x.db'}"))
