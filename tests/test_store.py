"""RoleStore on a real SQLite file and a real PostgreSQL server.

`databases` and both drivers are asyncio-only (`databases` calls
`asyncio.current_task()`, aiosqlite resolves asyncio futures), so these tests run on
asyncio only.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import anyio
import asyncpg
import databases
import pytest
import sqlalchemy

from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.store import (
    RoleStore,
    StoredUser,
    StoreUnavailable,
    UnknownRole,
    UnknownUser,
    update_user_role,
)
from support.servers import PostgresServer

pytestmark = pytest.mark.anyio

INTEGRITY_ERRORS = (sqlite3.IntegrityError, asyncpg.exceptions.IntegrityConstraintViolationError)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def database_url(sqlite_or_postgres_url: str) -> str:
    """Where the ``store`` (conftest) and these tests' own stores live."""
    return sqlite_or_postgres_url


def near_now(when: datetime) -> bool:
    return abs(datetime.now(UTC) - when) < timedelta(seconds=5)


async def test_create_and_get(store: RoleStore) -> None:
    created = await store.create_user("alice", "ADMIN", email="alice@example.com")
    assert created.id == "alice"
    assert created.email == "alice@example.com"
    assert created.role == "ADMIN"
    assert created.session_version == 1
    assert created.disabled is False
    assert created.revoked_at is None
    assert created.updated_at.utcoffset() == timedelta(0)
    assert near_now(created.updated_at)

    assert await store.get_user("alice") == created
    assert await store.get_user("nobody") is None


async def test_list_users_ordered_by_id(store: RoleStore) -> None:
    for user_id in ["carol", "alice", "bob"]:
        await store.create_user(user_id, "USER")
    assert [user.id for user in await store.list_users()] == ["alice", "bob", "carol"]


async def test_get_user_sends_exactly_one_query(store: RoleStore) -> None:
    await store.create_user("alice", "USER")
    before = store.queries
    await store.get_user("alice")
    assert store.queries == before + 1
    await store.get_user("nobody")
    assert store.queries == before + 2


async def test_create_user_errors(store: RoleStore) -> None:
    with pytest.raises(UnknownRole):
        await store.create_user("alice", "ROOT")
    assert await store.get_user("alice") is None

    await store.create_user("alice", "USER", email="a@example.com")
    with pytest.raises(ValueError, match="'alice' already exists"):
        await store.create_user("alice", "ADMIN")
    with pytest.raises(ValueError, match="'bob'"):
        await store.create_user("bob", "USER", email="a@example.com")
    assert [user.id for user in await store.list_users()] == ["alice"]
    assert (await store.get_user("alice")).role == "USER"  # type: ignore[union-attr]


async def test_update_user_role_bumps_version_and_time(store: RoleStore) -> None:
    created = await store.create_user("alice", "USER")
    seen: list[StoredUser] = []

    async def async_listener(user: StoredUser) -> None:
        seen.append(user)

    store.on_change += [seen.append, async_listener]

    updated = await store.update_user_role("alice", "ORG_ADMIN")
    assert updated.role == "ORG_ADMIN"
    assert updated.session_version == 2
    assert updated.updated_at > created.updated_at
    assert await store.get_user("alice") == updated
    assert seen == [updated, updated]

    again = await update_user_role(store, "alice", "ADMIN")
    assert (again.role, again.session_version) == ("ADMIN", 3)
    assert await store.get_user("alice") == again


async def test_unknown_role_touches_nothing(store: RoleStore) -> None:
    created = await store.create_user("alice", "USER")
    store.on_change.append(lambda user: pytest.fail("listener called"))
    before = store.queries
    with pytest.raises(UnknownRole):
        await store.update_user_role("alice", "SUPERUSER")
    assert store.queries == before  # refused before any query
    assert await store.get_user("alice") == created


async def test_custom_role_hierarchy(database_url: str, table: str) -> None:
    roles = RoleHierarchy(["viewer", "editor"])
    async with RoleStore(database_url, table=table, roles=roles) as store:
        await store.create_tables()
        await store.create_user("alice", "viewer")
        assert (await store.update_user_role("alice", "editor")).role == "editor"
        with pytest.raises(UnknownRole):
            await store.update_user_role("alice", "ADMIN")


async def test_unknown_user(store: RoleStore) -> None:
    store.on_change.append(lambda user: pytest.fail("listener called"))
    with pytest.raises(UnknownUser):
        await store.update_user_role("ghost", "ADMIN")
    with pytest.raises(UnknownUser):
        await store.revoke_sessions("ghost")
    with pytest.raises(UnknownUser):
        await store.set_disabled("ghost", True)
    assert await store.list_users() == []


async def test_revoke_sessions(store: RoleStore) -> None:
    created = await store.create_user("alice", "ADMIN")
    seen: list[StoredUser] = []
    store.on_change.append(seen.append)
    revoked = await store.revoke_sessions("alice")
    assert revoked.session_version == 2
    assert revoked.role == "ADMIN"
    assert revoked.updated_at > created.updated_at
    assert seen == [revoked]
    assert (await store.revoke_sessions("alice")).session_version == 3
    assert (await store.get_user("alice")).session_version == 3  # type: ignore[union-attr]


async def test_revoke_sessions_sets_revoked_at(store: RoleStore) -> None:
    await store.create_user("alice", "ADMIN")
    revoked = await store.revoke_sessions("alice")
    assert revoked.revoked_at is not None
    assert revoked.revoked_at.utcoffset() == timedelta(0) and near_now(revoked.revoked_at)
    assert revoked.revoked_at == revoked.updated_at  # one clock reading, one statement
    assert await store.get_user("alice") == revoked

    # A role change or (un)disabling bumps the version and leaves revoked_at alone.
    updated = await store.update_user_role("alice", "USER")
    assert (updated.session_version, updated.revoked_at) == (3, revoked.revoked_at)
    assert updated.updated_at > revoked.updated_at
    disabled = await store.set_disabled("alice", True)
    assert disabled.revoked_at == revoked.revoked_at
    assert await store.changes_since(revoked.updated_at) == [disabled]

    again = await store.revoke_sessions("alice")
    assert again.revoked_at is not None and again.revoked_at > revoked.revoked_at
    assert again.session_version == 5


async def test_set_disabled(store: RoleStore) -> None:
    await store.create_user("alice", "USER")
    disabled = await store.set_disabled("alice", True)
    assert disabled.disabled is True
    assert disabled.session_version == 2
    assert await store.get_user("alice") == disabled
    enabled = await store.set_disabled("alice", False)
    assert enabled.disabled is False
    assert (await store.get_user("alice")).disabled is False  # type: ignore[union-attr]


async def test_changes_since(store: RoleStore) -> None:
    alice = await store.create_user("alice", "USER")
    await store.create_user("bob", "USER")
    bob = await store.update_user_role("bob", "ADMIN")

    # Exact boundaries: `updated_at` round-trips to the microsecond.
    assert await store.changes_since(bob.updated_at) == [bob]
    assert await store.changes_since(bob.updated_at + timedelta(microseconds=1)) == []
    everything = await store.changes_since(alice.updated_at)
    assert [user.id for user in everything] == ["alice", "bob"]

    # The same instant in another zone means the same thing.
    elsewhere = bob.updated_at.astimezone(timezone(timedelta(hours=-5)))
    assert await store.changes_since(elsewhere) == [bob]
    with pytest.raises(ValueError, match="aware"):
        await store.changes_since(datetime.now())


async def test_create_tables_is_idempotent(store: RoleStore) -> None:
    created = await store.create_user("alice", "USER")
    await store.create_tables()
    assert await store.get_user("alice") == created


async def test_not_connected(database_url: str, table: str) -> None:
    store = RoleStore(database_url, table=table)
    with pytest.raises(RuntimeError, match="not connected"):
        await store.get_user("alice")


@pytest.mark.parametrize(
    ("table", "columns"),
    [
        ("users; DROP TABLE users", None),
        ("a.b.c", None),
        ("users", {"role": "role name"}),
        ("users", {"role": 'role"--'}),
        ("users", {"nickname": "nick"}),
        ("users", {"id": None}),
        ("users", {"role": "email"}),
    ],
)
def test_bad_identifiers(table: str, columns: dict[str, str | None] | None) -> None:
    with pytest.raises(ValueError):
        RoleStore("sqlite:///unused.db", table=table, columns=columns)


def test_unsupported_database() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        RoleStore("mysql://localhost/app")


# An app's own table (Prisma-style mixed-case names, a `timestamp` column on
# PostgreSQL), with an extra column and no `disabled`.

EXISTING = {
    "sqlite": """
        CREATE TABLE {table} (
            "userId" TEXT PRIMARY KEY,
            full_name TEXT NOT NULL DEFAULT '',
            mail TEXT UNIQUE,
            user_role TEXT NOT NULL CHECK (user_role IN ('USER', 'ADMIN')),
            ver INTEGER NOT NULL,
            "updatedAt" TEXT NOT NULL
        )""",
    "postgresql": """
        CREATE TABLE {table} (
            "userId" TEXT PRIMARY KEY,
            full_name TEXT NOT NULL DEFAULT '',
            mail TEXT UNIQUE,
            user_role TEXT NOT NULL CHECK (user_role IN ('USER', 'ADMIN')),
            ver INTEGER NOT NULL,
            "updatedAt" TIMESTAMP WITHOUT TIME ZONE NOT NULL
        )""",
}
COLUMNS: dict[str, str | None] = {
    "id": "userId",
    "email": "mail",
    "role": "user_role",
    "session_version": "ver",
    "updated_at": "updatedAt",
    "disabled": None,
    "revoked_at": None,
}


async def test_existing_table(database_url: str, table: str) -> None:
    database = databases.Database(database_url)
    await database.connect()
    try:
        await database.execute(EXISTING[database.url.dialect].format(table=table))
        await database.execute(
            f'INSERT INTO {table} ("userId", full_name, mail, user_role, ver, "updatedAt") '
            "VALUES ('u1', 'Ann', 'ann@example.com', 'USER', 7, '2024-05-01 12:30:00.250000')"
        )
        async with RoleStore(database_url, table=table, columns=COLUMNS) as store:
            await store.create_tables()  # exists: nothing happens
            user = await store.get_user("u1")
            assert user == StoredUser(
                id="u1",
                email="ann@example.com",
                role="USER",
                session_version=7,
                updated_at=datetime(2024, 5, 1, 12, 30, 0, 250000, tzinfo=UTC),
            )

            updated = await store.update_user_role("u1", "ADMIN")
            assert (updated.role, updated.session_version) == ("ADMIN", 8)
            assert near_now(updated.updated_at)
            row = await database.fetch_one(
                f'SELECT user_role, ver, "updatedAt", full_name FROM {table}'
            )
            assert row is not None
            assert (row[0], row[1], row[3]) == ("ADMIN", 8, "Ann")
            # Stored as UTC wall time, whatever the column type.
            stored = row[2] if isinstance(row[2], datetime) else datetime.fromisoformat(row[2])
            assert stored.replace(tzinfo=UTC) == updated.updated_at

            assert await store.changes_since(updated.updated_at) == [updated]
            assert await store.changes_since(updated.updated_at + timedelta(microseconds=1)) == []

            # The database refuses ORG_ADMIN (a CHECK constraint): nothing is written.
            with pytest.raises(INTEGRITY_ERRORS):
                await store.update_user_role("u1", "ORG_ADMIN")
            assert await store.get_user("u1") == updated

            with pytest.raises(ValueError, match="no disabled column"):
                await store.set_disabled("u1", True)
            store.on_change.append(lambda user: pytest.fail("listener called"))
            before = store.queries
            with pytest.raises(ValueError, match="no revoked_at column"):
                await store.revoke_sessions("u1")
            assert store.queries == before  # refused before any query
            assert await store.get_user("u1") == updated
            store.on_change.clear()
            created = await store.create_user("u2", "USER", email="bo@example.com")
            assert await store.get_user("u2") == created
    finally:
        await database.execute(f"DROP TABLE IF EXISTS {table}")
        await database.disconnect()


# The same kind of table with a revocation column of its own name.

WITH_REVOKED = {
    "sqlite": """
        CREATE TABLE {table} (
            "userId" TEXT PRIMARY KEY,
            user_role TEXT NOT NULL,
            ver INTEGER NOT NULL,
            "updatedAt" TEXT NOT NULL,
            "signedOutAt" TEXT
        )""",
    "postgresql": """
        CREATE TABLE {table} (
            "userId" TEXT PRIMARY KEY,
            user_role TEXT NOT NULL,
            ver INTEGER NOT NULL,
            "updatedAt" TIMESTAMP WITHOUT TIME ZONE NOT NULL,
            "signedOutAt" TIMESTAMP WITHOUT TIME ZONE
        )""",
}


async def test_existing_table_with_a_revoked_at_column(database_url: str, table: str) -> None:
    columns = {**COLUMNS, "email": None, "revoked_at": "signedOutAt"}
    database = databases.Database(database_url)
    await database.connect()
    try:
        await database.execute(WITH_REVOKED[database.url.dialect].format(table=table))
        await database.execute(
            f'INSERT INTO {table} ("userId", user_role, ver, "updatedAt", "signedOutAt") '
            "VALUES ('u1', 'USER', 7, '2024-05-01 12:30:00', '2024-05-01 12:00:00.500000')"
        )
        async with RoleStore(database_url, table=table, columns=columns) as store:
            user = await store.get_user("u1")
            assert user is not None
            assert user.revoked_at == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)

            revoked = await store.revoke_sessions("u1")
            assert revoked.session_version == 8
            assert revoked.revoked_at is not None and near_now(revoked.revoked_at)
            assert revoked.revoked_at == revoked.updated_at
            assert await store.get_user("u1") == revoked
            row = await database.fetch_one(f'SELECT "signedOutAt" FROM {table}')
            assert row is not None
            stored = row[0] if isinstance(row[0], datetime) else datetime.fromisoformat(row[0])
            assert stored.replace(tzinfo=UTC) == revoked.revoked_at  # UTC wall time

            updated = await store.update_user_role("u1", "ADMIN")
            assert updated.revoked_at == revoked.revoked_at
    finally:
        await database.execute(f"DROP TABLE IF EXISTS {table}")
        await database.disconnect()


async def test_default_schema_has_revoked_at(database_url: str, table: str) -> None:
    async with RoleStore(database_url, table=table) as store:
        assert "revoked_at" in store.table.c
        column = store.table.c.revoked_at
        assert column.name == "revoked_at" and column.nullable
        assert isinstance(column.type, sqlalchemy.DateTime) and column.type.timezone
        await store.create_tables()
        await store.create_user("alice", "USER")
        await store.revoke_sessions("alice")
        raw = await store.database.fetch_one(f"SELECT revoked_at FROM {table}")
        assert raw is not None and raw[0] is not None


# SQLite: one file, several stores and processes.


async def test_sqlite_shared_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with RoleStore(url) as one, RoleStore(url) as two:
        await one.create_tables()
        await one.create_user("alice", "USER")
        with sqlite3.connect(tmp_path / "shared.db") as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

        assert (await two.update_user_role("alice", "ADMIN")).session_version == 2
        assert (await one.get_user("alice")).role == "ADMIN"  # type: ignore[union-attr]

        script = (
            "import asyncio, sys\n"
            "from asgi_jwt_session.store import RoleStore\n"
            "async def main():\n"
            "    async with RoleStore(sys.argv[1]) as store:\n"
            "        for _ in range(20):\n"
            "            await store.revoke_sessions('alice')\n"
            "asyncio.run(main())\n"
        )
        process = subprocess.Popen([sys.executable, "-c", script, url])
        for _ in range(20):
            await one.revoke_sessions("alice")
            await two.revoke_sessions("alice")
        assert process.wait(timeout=30) == 0
        # Every increment counted, none lost between connections and processes.
        assert (await two.get_user("alice")).session_version == 2 + 60  # type: ignore[union-attr]


async def test_sqlite_in_memory() -> None:
    # One held connection keeps one in-memory database alive between queries.
    async with RoleStore("sqlite:///:memory:") as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        assert (await store.get_user("alice")) is not None


async def test_sqlite_unreachable(tmp_path: Path) -> None:
    before = {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}
    store = RoleStore(f"sqlite:///{tmp_path / 'missing' / 'roles.db'}", connect_retry=None)
    with pytest.raises(StoreUnavailable):
        await store.connect()
    with pytest.raises(RuntimeError, match="not connected"):
        await store.get_user("alice")
    # aiosqlite stops its worker thread after a failed connect without waiting for it;
    # let the thread finish while the event loop still runs.
    with anyio.fail_after(5):
        while {t for t in threading.enumerate()
               if "_connection_worker_thread" in t.name} - before:
            await anyio.sleep(0.01)


async def test_sqlite_locked_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    async with RoleStore(databases.Database(f"sqlite:///{path}", timeout=0.05)) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            with pytest.raises(StoreUnavailable, match="locked"):
                await store.update_user_role("alice", "ADMIN")
            assert (await store.get_user("alice")).session_version == 1  # type: ignore[union-attr]
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert (await store.update_user_role("alice", "ADMIN")).session_version == 2


async def test_sqlite_schema_errors_are_not_outages(tmp_path: Path, table: str) -> None:
    url = f"sqlite:///{tmp_path / 'roles.db'}"
    async with RoleStore(url, table=table) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
    # A wrong `columns=` mapping or table name is a bug to see, not an outage to wait out.
    async with RoleStore(url, table=table, columns={"role": "user_role"}) as wrong:
        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            await wrong.get_user("alice")
        with pytest.raises(sqlite3.OperationalError, match="no such column"):
            await wrong.update_user_role("alice", "ADMIN")
    async with RoleStore(url, table="no_such_table") as missing:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await missing.get_user("alice")
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            await missing.list_users()


def test_asyncpg_arguments() -> None:
    store = RoleStore("postgresql+asyncpg://app:p%40ss@db.example:5433/app"
                      "?min_size=1&max_size=5&sslmode=verify-full&application_name=web")
    dsn, arguments = store.asyncpg_arguments()
    # libpq options stay; `databases`' pool sizes go; the store's own server settings come.
    assert dsn == ("postgresql://app:p%40ss@db.example:5433/app"
                   "?sslmode=verify-full&application_name=web")
    assert arguments == {"server_settings": {"timezone": "UTC"}}

    _, arguments = RoleStore("postgresql://app@db/app?ssl=TRUE").asyncpg_arguments()
    assert arguments["ssl"] is True
    _, arguments = RoleStore("postgresql://app@db/app?ssl=verify-full").asyncpg_arguments()
    assert arguments["ssl"] == "verify-full"
    dsn, _ = RoleStore("postgresql://app@/app?unix_sock=/run/pg").asyncpg_arguments()
    assert dsn == "postgresql://app@/app?host=%2Frun%2Fpg"

    own = databases.Database("postgresql://app@db/app?max_size=2", ssl=False,
                             server_settings={"application_name": "x"}, min_size=1)
    dsn, arguments = RoleStore(own).asyncpg_arguments()
    assert dsn == "postgresql://app@db/app"
    assert arguments == {"ssl": False, "server_settings": {"application_name": "x"}}
    with pytest.raises(ValueError, match="PostgreSQL"):
        RoleStore("sqlite:///unused.db").asyncpg_arguments()


# PostgreSQL: a server of its own, stopped and started again.


async def test_postgres_unreachable_and_recovery(own_postgres: PostgresServer) -> None:
    async with RoleStore(own_postgres.dsn) as store:
        await store.create_tables()
        created = await store.create_user("alice", "USER")

        own_postgres.stop()
        with pytest.raises(StoreUnavailable):
            await store.get_user("alice")
        with pytest.raises(StoreUnavailable):
            await store.update_user_role("alice", "ADMIN")

        own_postgres.start()
        assert await store.get_user("alice") == created
        assert (await store.update_user_role("alice", "ADMIN")).session_version == 2

    own_postgres.stop()
    with pytest.raises(StoreUnavailable):
        await RoleStore(own_postgres.dsn, connect_retry=None).connect()
