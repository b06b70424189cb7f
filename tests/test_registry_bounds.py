"""A bounded session registry (issue 19, section 3; ASVS 7.1.2): a per-user cap on
sessions that ends the oldest, a paginated list (store, API, endpoint, CLI), and reads
bounded by indexes and expiry whatever the table holds: counted in rows and statements
on real SQLite and PostgreSQL, never timed (benchmarks/bench_registry.py times them)."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from asgi_jwt_session.cli import main
from asgi_jwt_session.registry import list_sessions, parse_cursor, session_cursor
from asgi_jwt_session.store import RoleStore, StoredSession
from support.servers import PostgresServer
from tests.conftest import fetch_csrf
from tests.test_registry import devices, registry_app, seed, signed_in, signin


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # `databases`

HOUR = timedelta(hours=1)


@pytest.fixture
def database_url(sqlite_or_postgres_url: str) -> str:
    return sqlite_or_postgres_url


def make_store(database_url: str, cap: int | None = 3) -> RoleStore:
    table = f"users_{uuid.uuid4().hex[:12]}"
    return RoleStore(database_url, table=table, sessions_table=f"{table}_s",
                     max_sessions_per_user=cap)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[RoleStore]:
    async with make_store(database_url) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        await store.create_user("bob", "USER")
        yield store


def row(session_id: str, user_id: str, signed_in: datetime, *,
        renewed: datetime | None = None, ends_in: timedelta = 48 * HOUR) -> StoredSession:
    renewed = renewed or signed_in
    return StoredSession(session_id, user_id, signed_in, renewed, renewed + 24 * HOUR,
                         signed_in + ends_in)


async def sign_ins(store: RoleStore, count: int, start: datetime, prefix: str = "s") -> None:
    """``count`` sign-ins of alice a second apart from ``start``: sessions s0, s1, ..."""
    for i in range(count):
        await store.record_session(row(f"{prefix}{i}", "alice", start + timedelta(seconds=i)),
                                   first=True)


# --- the cap -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_cap_ends_the_sessions_signed_in_longest_ago(store: RoleStore) -> None:
    start = datetime.now(UTC) - HOUR
    times = [start + timedelta(seconds=i, milliseconds=7 * i) for i in range(5)]
    counts = []
    for i, when in enumerate(times):
        before = store.queries
        await store.record_session(row(f"s{i}", "alice", when), first=True)
        counts.append(store.queries - before)
    await store.record_session(row("b0", "bob", start), first=True)
    # Upsert, prune, cap check; past the cap also: revoke the rows, move revoked_at.
    assert counts == [3, 3, 3, 5, 5]
    assert [s.id for s in await store.list_sessions("alice")] == ["s4", "s3", "s2"]
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_at is not None
    # Sessions signed in at or before revoked_at end: s0 and s1, not s2.
    assert times[1] < alice.revoked_at < times[2]
    assert alice.session_version == 3  # each time the cap ended one, announced
    assert alice.revoked_sessions == frozenset()  # ended by revoked_at: no id to read
    bob = await store.get_user("bob")
    assert bob is not None and bob.revoked_at is None and bob.session_version == 1
    # A renewal of a live session is no sign-in: no cap check.
    before = store.queries
    await store.record_session(row("s2", "alice", times[2], renewed=datetime.now(UTC)),
                               first=False)
    assert store.queries == before + 1


@pytest.mark.anyio
async def test_the_cap_never_moves_revoked_at_back(store: RoleStore) -> None:
    start = datetime.now(UTC) - HOUR
    await sign_ins(store, 3, start)
    revoked = (await store.revoke_sessions("alice")).revoked_at
    await store.record_session(row("s3", "alice", start + timedelta(seconds=3)), first=True)
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_at == revoked


@pytest.mark.anyio
async def test_the_session_kept_by_revoke_others_is_ordered_by_its_new_sign_in(
        store: RoleStore) -> None:
    start = datetime.now(UTC) - HOUR
    await sign_ins(store, 3, start)
    alice = await store.revoke_other_sessions("alice", "s0")  # the oldest stays
    assert alice.revoked_at is not None
    [kept] = await store.list_sessions("alice")
    assert kept.id == "s0" and kept.created_at > alice.revoked_at
    now = datetime.now(UTC)
    await sign_ins(store, 3, now, "n")
    assert [s.id for s in await store.list_sessions("alice")] == ["n2", "n1", "n0"]
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_at is not None
    assert alice.revoked_at >= kept.created_at  # so the moved sign-in of s0 ends too


def test_a_sign_in_past_the_cap_signs_the_oldest_device_out(tmp_path: Path) -> None:
    store = RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table="users",
                      sessions_table="user_sessions", max_sessions_per_user=2)
    with devices(registry_app(store), 3) as [laptop, phone, tablet]:
        seed(laptop, store, ("alice", "USER"))
        signin(laptop)
        signin(phone)
        signin(tablet)
        assert signed_in(tablet) and signed_in(phone)
        assert not signed_in(laptop)  # the version moved: revalidated and refused
        listed = tablet.get("/auth/sessions").json()["sessions"]
        assert len(listed) == 2 and listed[0]["current"]


def test_max_sessions_per_user_is_checked(tmp_path: Path) -> None:
    for bad in (0, -1, 2.5, True, "50"):
        with pytest.raises(ValueError, match="max_sessions_per_user"):
            RoleStore(f"sqlite:///{tmp_path / 'x.db'}", sessions_table="s",
                      max_sessions_per_user=bad)  # type: ignore[arg-type]
    assert RoleStore(f"sqlite:///{tmp_path / 'x.db'}").max_sessions_per_user == 50


# --- pagination ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_list_sessions_a_page_at_a_time(database_url: str) -> None:
    async with make_store(database_url, cap=None) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        now = datetime.now(UTC)
        # Two renewed in the same microsecond: ordered by id, never listed twice.
        renewed = [now - timedelta(minutes=i) for i in range(7)] + [now - timedelta(minutes=3)]
        for i, when in enumerate(renewed):
            await store.record_session(row(f"s{i}", "alice", when - HOUR, renewed=when),
                                       first=False)
        seen: list[str] = []
        cursor = None
        pages = []
        while True:
            before = store.queries
            page = await list_sessions(store, "alice", limit=3, cursor=cursor)
            assert store.queries == before + 1 and len(page) <= 3
            pages.append(len(page))
            seen += [s.id for s in page]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert pages == [3, 3, 2]
        assert seen == ["s0", "s1", "s2", "s7", "s3", "s4", "s5", "s6"]
        assert [s.id for s in await list_sessions(store, "alice")] == seen  # 20 a page
        for bad in (0, 101, True):
            with pytest.raises(ValueError):
                await list_sessions(store, "alice", limit=bad)


def test_cursors() -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    stored = StoredSession("abc_-1", "u", when, when, when, when)
    assert parse_cursor(session_cursor(stored)) == (when, "abc_-1")
    for bad in ("", "!!", "a" * 300, "MTIzOg", "eDpzMQ", "MTIzOmEgYg", "\ud800"):
        with pytest.raises(ValueError):
            parse_cursor(bad)


def test_the_endpoint_pages(tmp_path: Path) -> None:
    store = RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table="users",
                      sessions_table="user_sessions")
    with devices(registry_app(store), 5) as browsers:
        seed(browsers[0], store, ("alice", "USER"))
        ids = [signin(browser) for browser in browsers]
        client = browsers[-1]
        body = client.get("/auth/sessions", params={"limit": 2}).json()
        assert [s["id"] for s in body["sessions"]] == ids[::-1][:2]
        listed = [s["id"] for s in body["sessions"]]
        while body["nextCursor"] is not None:
            body = client.get("/auth/sessions",
                              params={"limit": 2, "cursor": body["nextCursor"]}).json()
            listed += [s["id"] for s in body["sessions"]]
        assert sorted(listed) == sorted(ids) and len(listed) == 5
        assert client.get("/auth/sessions").json()["nextCursor"] is None
        for query in ({"limit": "0"}, {"limit": "101"}, {"limit": "x"}, {"limit": "-1"},
                      {"limit": "9" * 5000}, {"cursor": "nope"}, {"cursor": "\u00e9"}):
            response = client.get("/auth/sessions", params=query)
            assert response.status_code == 400, query
            assert "detail" in response.json()
        for query in ({"limit": "00500"}, {"limit": "0101"}, {"limit": "10" + "0" * 20}):
            response = client.get("/auth/sessions", params=query)  # each a number past 100
            assert response.status_code == 400, query
            assert "limit must be" in response.json()["detail"]
        assert client.get("/auth/sessions", params={"limit": "002"}).status_code == 200
        fetch_csrf(client)


def test_the_cli_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = f"sqlite:///{tmp_path / 'roles.db'}"
    store = RoleStore(database, table="users", sessions_table="user_sessions")

    async def fill() -> None:
        async with store:
            await store.create_tables()
            await store.create_user("ann", "USER")
            now = datetime.now(UTC)
            for i in range(3):
                await store.record_session(row(f"s{i}", "ann", now - timedelta(minutes=i)),
                                           first=False)

    import asyncio

    asyncio.run(fill())
    assert main(["sessions", "ann", "--limit", "2", "--database", database]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["s0", "s1"]
    cursor = err.split("--cursor ")[1].strip()
    assert main(["sessions", "ann", "--limit", "2", "--cursor", cursor,
                 "--database", database]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["s2"] and err == ""
    assert main(["sessions", "ann", "--cursor", "bogus", "--database", database]) == 1
    assert "cursor" in capsys.readouterr().err


# --- reads bounded by indexes and expiry -----------------------------------------------------


@pytest.mark.anyio
async def test_revoked_ids_read_only_what_no_revocation_time_ends(store: RoleStore) -> None:
    start = datetime.now(UTC) - HOUR
    await sign_ins(store, 3, start)
    await store.revoke_session("s1")
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_sessions == frozenset({"s1"})
    await store.revoke_other_sessions("alice", "s2")  # s0 and s1 end by revoked_at
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_sessions == frozenset()
    await store.record_session(row("s3", "alice", datetime.now(UTC)), first=True)
    await store.revoke_session("s2")  # after revoked_at: read by id
    await store.revoke_session("s3")
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_sessions == frozenset({"s2", "s3"})
    # A revoked row past its session's end goes at the user's next sign-in.
    await store.record_session(row("old", "bob", start - 72 * HOUR, ends_in=HOUR),
                               first=False)
    await store.revoke_session("old")
    bob = await store.get_user("bob")
    assert bob is not None and bob.revoked_sessions == frozenset({"old"})
    await store.record_session(row("new", "bob", start), first=True)
    bob = await store.get_user("bob")
    assert bob is not None and bob.revoked_sessions == frozenset()


def sqlite_plan(path: str, sql: str, *parameters: object) -> str:
    with sqlite3.connect(path) as connection:
        plan = connection.execute(f"EXPLAIN QUERY PLAN {sql}", parameters).fetchall()
    connection.close()
    return " | ".join(str(step[-1]) for step in plan)


@pytest.mark.anyio
async def test_the_registry_statements_use_indexes_even_on_an_old_table(
        tmp_path: Path) -> None:
    path = tmp_path / "roles.db"
    store = RoleStore(f"sqlite:///{path}", table="users", sessions_table="user_sessions")
    async with store:
        await store.create_tables()
    with sqlite3.connect(path) as connection:  # as a release before the indexes left it
        for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                          " AND name LIKE 'ix_user_sessions_%'").fetchall():
            connection.execute(f"DROP INDEX {name}")
    connection.close()
    async with store:
        await store.create_tables()  # adds what is missing
    sessions = "user_sessions"
    text = str(store._get_user_query)
    plan = sqlite_plan(str(path), text.replace(":user_id", "'a'"))
    assert f"INDEX ix_{sessions}_user_revoked" in plan, plan
    plan = sqlite_plan(str(path),
                       f"DELETE FROM {sessions} WHERE user_id = 'a' AND ends_at < '2026'")
    assert f"INDEX ix_{sessions}_user_ends" in plan, plan
    plan = sqlite_plan(str(path), f"SELECT * FROM {sessions} WHERE user_id = 'a' AND revoked_at"
                       " IS NULL AND expires_at > '2026' ORDER BY renewed_at DESC, id DESC "
                       "LIMIT 21")
    assert f"INDEX ix_{sessions}_user_revoked" in plan, plan


@pytest.mark.anyio
async def test_many_rows_for_one_user_cost_a_bounded_read(database_url: str) -> None:
    # 2,000 sign-ins of one user, then "sign out other devices": each later statement
    # reads at most the cap's rows, however many the table holds.
    async with make_store(database_url, cap=None) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        assert store.sessions is not None
        start = datetime.now(UTC) - HOUR
        rows = [{"id": f"s{i}", "user_id": "alice", "created_at": start + timedelta(
                    milliseconds=i), "renewed_at": start, "expires_at": start + 24 * HOUR,
                 "ends_at": start + 48 * HOUR} for i in range(2000)]
        if not store.is_postgres:
            for values in rows:
                for key in ("created_at", "renewed_at", "expires_at", "ends_at"):
                    values[key] = values[key].replace(tzinfo=None)  # type: ignore[attr-defined]
        await store.database.execute_many(store.sessions.insert(), rows)
        store.max_sessions_per_user = 50
        await store.record_session(row("new", "alice", datetime.now(UTC)), first=True)
        live = await store.list_sessions("alice")
        assert len(live) == 50 and live[0].id == "new"  # the 1,951 oldest ended at once
        alice = await store.get_user("alice")
        assert alice is not None and alice.revoked_sessions == frozenset()
        await store.revoke_other_sessions("alice", "new")
        alice = await store.get_user("alice")
        assert alice is not None and alice.revoked_sessions == frozenset()
        assert [s.id for s in await store.list_sessions("alice")] == ["new"]
        if store.is_postgres:  # the planner reads the revoked ids on the index, no seq scan
            await store.database.execute(f"ANALYZE {store.sessions.name}")
            query = str(store._get_user_query).replace(":user_id", "'alice'")
            plan = "\n".join(row[0] for row in
                             await store.database.fetch_all(f"EXPLAIN {query}"))
            assert f"Seq Scan on {store.sessions.name}" not in plan, plan
            assert f"ix_{store.sessions.name}_user_revoked" in plan, plan


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_reads_the_revoked_ids_on_the_index(postgres: PostgresServer) -> None:
    # With one user holding nearly every row, a one-sided range on revoked_at looked like
    # a third of the table to the planner, which then scanned it all on each revalidation.
    from benchmarks.bench_registry import fill

    async with make_store(postgres.dsn, cap=50) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        await fill(store, 30_000)  # live sessions of a table from before the cap
        await store.record_session(row("new", "alice", datetime.now(UTC)), first=True)
        assert store.sessions is not None
        await store.database.execute(f"VACUUM ANALYZE {store.sessions.name}")
        query = str(store._get_user_query).replace(":user_id", "'alice'")
        plan = "\n".join(row[0] for row in await store.database.fetch_all(f"EXPLAIN {query}"))
        assert f"Seq Scan on {store.sessions.name}" not in plan, plan
        assert f"ix_{store.sessions.name}_user_revoked" in plan, plan


@pytest.mark.anyio
async def test_a_revoked_session_renewed_before_its_revalidation_is_read_by_id(
        store: RoleStore) -> None:
    # A token without a sign-in time (Auth.js without auth_time) is judged by when it
    # was issued: renewed after "sign out other devices", only its id can end it.
    start = datetime.now(UTC) - HOUR
    await sign_ins(store, 2, start)
    alice = await store.revoke_other_sessions("alice", "s1")
    assert alice.revoked_sessions == frozenset()
    await store.record_session(row("s0", "alice", start, renewed=datetime.now(UTC)),
                               first=False)
    alice = await store.get_user("alice")
    assert alice is not None and alice.revoked_sessions == frozenset({"s0"})
    assert [s.id for s in await store.list_sessions("alice")] == ["s1"]  # still revoked
