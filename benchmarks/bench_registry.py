"""What the session registry costs: the ordinary request with it on, and its queries.

1. Per-request cost in process (the in-process harness, middleware around a bare ASGI
   endpoint as in ``bench_freshness``): the warm JWT cookie with freshness on and no
   registry (twice: the difference between the two is the noise), and with a registry.
   They and the no-session baseline take turns request by request, order rotated, so
   machine drift lands on all alike. The registry's store counts its writes: an ordinary
   request must make none.
2. Statements sent to a real ``RoleStore`` (a SQLite file) per sign-in, ordinary request,
   renewal, revocation of one session, the revalidation it causes, and "sign out other
   devices", driven through the middleware as a browser would.
3. Scale: one user with ``--rows`` rows (100,000) against 10, on a SQLite file. The rows
   are live sessions in a table from before ``max_sessions_per_user``: the first sign-in
   ends all but the 50 newest (once); then a sign-in, the first page of the list and a
   revalidation (``get_user`` with the revoked ids), before and after "sign out other
   devices", median ms of ``--repeat`` each. Bounded means the two columns stay close.

    python -m benchmarks.bench_registry [--requests N] [--rows N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, login
from asgi_jwt_session.freshness import CheckedUser, Freshness
from asgi_jwt_session.registry import (
    SessionRegistry,
    list_sessions,
    revoke_other_sessions,
    revoke_session,
)
from asgi_jwt_session.session import get_session
from asgi_jwt_session.store import RoleStore, StoredSession
from asgi_jwt_session.tokens import TokenCodec
from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app
from benchmarks.bench_freshness import fake_time
from benchmarks.strategies import BASELINE, read_jwt

SECRET = "benchmark-secret-" + "x" * 32
USER, ROLE = FIXED_USER


class CountingStore:
    """A registry store that counts writes (and a loader that always finds the user)."""

    def __init__(self) -> None:
        self.writes = 0

    async def record_session(self, session: StoredSession, *, first: bool) -> None:
        self.writes += 1

    async def __call__(self, user_id: str) -> CheckedUser:
        return CheckedUser(ROLE, 1)


def cookie_at(now: int) -> str:
    claims = {"sub": USER, "role": ROLE, "ver": 1, "chk": now, "jti": "j1", "iat": now,
              "exp": now + 30 * 86400, "auth_time": now}
    return "session=" + TokenCodec(SECRET).encode(claims)


def jwt_app(name: str, freshness: Freshness) -> inprocess.BenchApp:
    middleware = Middleware(JWTSessionMiddleware, secret_key=SECRET, freshness=freshness)
    return make_app(name, Setup([middleware]), read_jwt, bare=True)


def request_cost(requests: int) -> dict[str, Any]:
    """Request time and session cost over the baseline, registry off and on (µs)."""
    store = CountingStore()
    apps = [
        BASELINE.build(BenchConfig(secret=SECRET), bare=True),
        jwt_app("registry-off", Freshness(store)),
        jwt_app("registry-off-again", Freshness(store)),
        jwt_app("registry-on", Freshness(store, registry=SessionRegistry(store))),  # type: ignore[arg-type]
    ]
    scope = inprocess.make_scope("/", cookie_at(int(time.time())))
    body = f"{USER} {ROLE}".encode()
    streams = {app.name: inprocess.Stream(app, [scope] * 500, [body] * 500, [scope])
               for app in apps}
    samples = asyncio.run(inprocess.run_streams(streams, requests))
    if store.writes:
        raise RuntimeError("an ordinary request wrote to the registry")
    return inprocess.session_costs(samples, BASELINE.name)


async def statements() -> dict[str, int]:
    """Statements sent to a SQLite RoleStore for each step of a session's life."""
    with tempfile.TemporaryDirectory() as folder:
        store = RoleStore(f"sqlite:///{Path(folder) / 'bench.db'}",
                          sessions_table="user_sessions")

        async def sign_in(request: Request) -> PlainTextResponse:
            login(request, "alice", "USER", version=int(request.query_params["ver"]))
            return PlainTextResponse(get_session(request).jti or "")

        async def me(request: Request) -> PlainTextResponse:
            return PlainTextResponse("yes" if get_session(request).user else "no")

        async def others(request: Request) -> PlainTextResponse:
            await revoke_other_sessions(request)
            return PlainTextResponse("ok")

        freshness = Freshness(store, revalidate_after=3600,
                              registry=SessionRegistry(store))
        app = Starlette(routes=[Route("/login", sign_in), Route("/me", me),
                                Route("/others", others)],
                        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET,
                                               freshness=freshness, update_age=60)])
        counts: dict[str, int] = {}
        async with store:
            await store.create_tables()
            await store.create_user("alice", "USER")

            async def get(path: str, cookie: str | None) -> tuple[str, str | None]:
                _, headers, body = await inprocess.call(app, inprocess.make_scope(path, cookie))
                for pair in inprocess.set_cookies(headers):
                    if pair.startswith("session="):
                        cookie = pair if pair != "session=" else None
                return body.decode(), cookie

            def step(name: str, before: int) -> None:
                counts[name] = store.queries - before

            with fake_time(time.time()) as now:
                before = store.queries
                jti, laptop = await get("/login?ver=1", None)
                step("sign-in", before)
                _, phone = await get("/login?ver=1", None)
                before = store.queries
                for _ in range(100):
                    await get("/me", laptop)
                step("100 ordinary requests", before)
                now[0] += 61
                before = store.queries
                _, laptop = await get("/me", laptop)
                step("renewal", before)
                _, phone = await get("/me", phone)
                before = store.queries
                await revoke_session(store, jti)
                step("revoke one session", before)
                before = store.queries
                answer, _ = await get("/me", laptop)
                assert answer == "no", "the revoked session was served"
                step("revalidation after it (per process)", before)
                _, laptop = await get("/login?ver=2", None)
                before = store.queries
                await get("/others", laptop)
                step("sign out other devices", before)
    return counts


COLUMNS = ("id", "user_id", "created_at", "renewed_at", "expires_at", "ends_at")


def session_rows(count: int) -> list[tuple[Any, ...]]:
    """``count`` live sessions of alice, signed in a second apart until an hour ago."""
    start = datetime.now(UTC) - timedelta(seconds=count + 3600)
    day = timedelta(days=1)
    rows = []
    for i in range(count):
        signed_in = start + timedelta(seconds=i)
        renewed = signed_in + timedelta(minutes=30)
        rows.append((f"s{i:07d}", "alice", signed_in, renewed, renewed + 30 * day,
                     signed_in + 90 * day))
    return rows


async def fill(store: RoleStore, count: int) -> None:
    """Insert the rows behind the store's back, as fast as each database takes them."""
    assert store.sessions is not None
    rows = session_rows(count)
    if store.is_postgres:
        import asyncpg  # type: ignore[import-untyped]

        connection = await asyncpg.connect(store.asyncpg_arguments()[0])
        try:
            await connection.copy_records_to_table(store.sessions.name, records=rows,
                                                   columns=COLUMNS)
        finally:
            await connection.close()
        return
    path = str(store.database.url.database)
    text = [(*row[:2], *(when.strftime("%Y-%m-%d %H:%M:%S.%f") for when in row[2:]))
            for row in rows]
    with sqlite3.connect(path) as connection:
        connection.executemany(f"INSERT INTO {store.sessions.name} ({', '.join(COLUMNS)}) "
                               "VALUES (?, ?, ?, ?, ?, ?)", text)
    connection.close()


async def timed(call: Any, repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls of ``call()``."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def scale_one(count: int, repeat: int, dsn: str | None) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        table = f"bench_{count}_{int(time.time())}"
        store = RoleStore(dsn or f"sqlite:///{Path(folder) / 'bench.db'}", table=table,
                          sessions_table=f"{table}_sessions")
        async with store:
            await store.create_tables()
            await store.create_user("alice", "USER")
            await fill(store, count)
        figures: dict[str, float] = {}
        async with store:
            numbers = iter(range(10**9))

            def new_row() -> StoredSession:
                now = datetime.now(UTC)
                return StoredSession(f"n{next(numbers)}", "alice", now, now,
                                     now + timedelta(days=30), now + timedelta(days=90))

            async def sign_in() -> None:
                await store.record_session(new_row(), first=True)

            async def listing() -> None:
                await list_sessions(store, "alice")

            async def revalidation() -> None:
                await store.get_user("alice")

            async def settle() -> None:
                # PostgreSQL: the rows one statement just revoked leave dead index entries
                # that bitmap scans read until autovacuum (a minute at most by default);
                # with the cap in place no statement revokes more than ~50 rows.
                if dsn:
                    assert store.sessions is not None
                    await store.database.execute(f"VACUUM ANALYZE {store.sessions.name}")

            figures["first sign-in (ends all but 50 at once)"] = await timed(sign_in, 1)
            await settle()
            while len(await store.list_sessions("alice")) < 50:  # the 10 rows: up to the cap
                await sign_in()
            figures["sign-in at the cap (ends the oldest)"] = await timed(sign_in, repeat)
            figures["list (first page)"] = await timed(listing, repeat)
            figures["revalidation"] = await timed(revalidation, repeat)
            figures["sign out other devices"] = await timed(
                lambda: store.revoke_other_sessions("alice", "n0"), 1)
            await settle()
            figures["revalidation after it"] = await timed(revalidation, repeat)
            figures["sign-in under the cap"] = await timed(sign_in, min(repeat, 40))
            user = await store.get_user("alice")
            assert user is not None
            figures["revoked ids read"] = len(user.revoked_sessions)
            assert store.sessions is not None
            figures["rows in the table"] = await store.database.fetch_val(
                f"SELECT count(*) FROM {store.sessions.name}")
            if dsn:
                for name in (store.sessions.name, table):
                    await store.database.execute(f"DROP TABLE {name}")
        return figures


def scale(rows: int, repeat: int, dsn: str | None = None) -> dict[str, dict[str, float]]:
    """The registry's costs for one user with 10 rows and with ``rows`` (SQLite, or the
    PostgreSQL database of ``dsn``)."""
    return {str(count): asyncio.run(scale_one(count, repeat, dsn)) for count in (10, rows)}


def postgres_scale(rows: int, repeat: int) -> dict[str, dict[str, float]] | None:
    """:func:`scale` on a PostgreSQL server of its own (None when none can start)."""
    from support.servers import PostgresServer, ServerUnavailable

    server = PostgresServer()
    try:
        server.start()
    except ServerUnavailable as exc:
        print(f"PostgreSQL: skipped ({exc})")
        return None
    try:
        return scale(rows, repeat, server.dsn)
    finally:
        server.close()


def run(requests: int = 20000, rows: int = 100_000, repeat: int = 50,
        postgres: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {"request_cost": request_cost(requests),
                               "statements": asyncio.run(statements()),
                               "scale": scale(rows, repeat)}
    if postgres:
        results["scale_postgres"] = postgres_scale(rows, repeat)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rows", type=int, default=100_000,
                        help="rows of one user in the scale comparison (default 100,000)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--postgres", action="store_true",
                        help="also compare on a PostgreSQL server it starts (initdb)")
    output.add_json_arguments(parser, "registry.json")
    args = parser.parse_args()
    results = run(args.requests, args.rows, args.repeat, args.postgres)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load {load:.2f}, Python {platform.python_version()}, "
          f"{args.requests} requests each")
    print(f"{'warm JWT cookie, freshness on':<32}{'median µs':>12}{'p99 µs':>10}   "
          f"(cost over {BASELINE.name})")
    for name, entry in results["request_cost"].items():
        if name != BASELINE.name:
            c = entry["session_cost_us"]
            print(f"{name:<32}{c['median']:>12.2f}{c['p99']:>10.2f}")
    print()
    print("statements sent to the store (SQLite RoleStore with sessions_table)")
    for name, count in results["statements"].items():
        print(f"  {name:<40}{count:>3}")
    print()
    for key, database in (("scale", "SQLite"), ("scale_postgres", "PostgreSQL")):
        if not results.get(key):
            continue
        small, large = results[key].values()
        print(f"one user's rows ({database}, median ms of {args.repeat})"
              f"{'10':>12}{args.rows:>12,}")
        for name in small:
            print(f"  {name:<46}{small[name]:>12.2f}{large[name]:>12.2f}")
    path = output.json_path(args, "registry.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
