"""Server-side session middlewares the benchmark compares against, written as their users
write them: a session-id cookie, then one lookup per request.

- ``DatabaseSessionMiddleware``: the `databases` package (SQLite or PostgreSQL), one
  ``fetch_one`` of a session+user join, the query as a text string with named values.
- ``AsyncpgSessionMiddleware``: the strongest fair database competitor: a raw asyncpg
  pool, the statement prepared once per connection (asyncpg's statement cache) and no
  reset round trip when a connection goes back to the pool.
- ``RedisSessionMiddleware``: the session as a JSON blob under ``session:<id>`` in Redis
  (redis-py asyncio), one GET.

Each puts a plain dict (``uid``, ``role``) or an empty dict into ``scope["session"]``, so
the route reads ``request.session`` exactly as it does under Starlette's middleware.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "session_id"
SESSION_TTL = 14 * 24 * 3600  # seconds a stored session is valid

SESSION_QUERY = (
    "SELECT u.id, u.role FROM sessions AS s JOIN users AS u ON u.id = s.user_id "
    "WHERE s.id = :sid AND s.expires_at > :now"
)
# The same query with asyncpg's positional parameters.
SESSION_QUERY_PG = (
    "SELECT u.id, u.role FROM sessions AS s JOIN users AS u ON u.id = s.user_id "
    "WHERE s.id = $1 AND s.expires_at > $2"
)

SCHEMA = [
    "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL, role TEXT NOT NULL)",
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, "
    "user_id TEXT NOT NULL REFERENCES users (id), expires_at BIGINT NOT NULL)",
    "CREATE INDEX sessions_user_id ON sessions (user_id)",
]


class SessionIdMiddleware:
    """Session id cookie → one lookup per request → ``scope["session"]``; subclasses say
    how the lookup is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def lookup(self, sid: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sid = HTTPConnection(scope).cookies.get(COOKIE)
        scope["session"] = (await self.lookup(sid) if sid else None) or {}
        await self.app(scope, receive, send)


class DatabaseSessionMiddleware(SessionIdMiddleware):
    """Session id cookie → ``databases`` lookup, one query per request."""

    def __init__(self, app: ASGIApp, database: Any) -> None:
        super().__init__(app)
        self.database = database

    async def lookup(self, sid: str) -> dict[str, Any] | None:
        row = await self.database.fetch_one(
            query=SESSION_QUERY, values={"sid": sid, "now": int(time.time())}
        )
        return None if row is None else {"uid": row["id"], "role": row["role"]}


class PoolHolder:
    """The asyncpg pool, created at startup (after the middleware stack is built)."""

    pool: Any = None


class AsyncpgSessionMiddleware(SessionIdMiddleware):
    """Session id cookie → raw asyncpg pool, prepared statement, one round trip."""

    def __init__(self, app: ASGIApp, pool: PoolHolder) -> None:
        super().__init__(app)
        self.holder = pool

    async def lookup(self, sid: str) -> dict[str, Any] | None:
        async with self.holder.pool.acquire() as conn:
            row = await conn.fetchrow(SESSION_QUERY_PG, sid, int(time.time()))
        return None if row is None else {"uid": row[0], "role": row[1]}


async def no_reset(connection: Any) -> None:
    """asyncpg pool ``reset=``: skip the reset query (the app never changes session state)."""


class RedisSessionMiddleware(SessionIdMiddleware):
    """Session id cookie → Redis GET of a JSON blob."""

    def __init__(self, app: ASGIApp, redis: Any) -> None:
        super().__init__(app)
        self.redis = redis

    async def lookup(self, sid: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"session:{sid}")
        return None if raw is None else dict(json.loads(raw))


# Populating the stores (run once by the suite, before any measurement).

async def populate_database(database: Any, users: Iterable[tuple[str, str, str]]) -> None:
    """Create the schema and one user + one session per ``(user_id, role, session_id)``."""
    expires_at = int(time.time()) + SESSION_TTL
    for statement in SCHEMA:
        await database.execute(statement)
    rows = list(users)
    async with database.transaction():
        await database.execute_many(
            "INSERT INTO users (id, email, role) VALUES (:id, :email, :role)",
            [{"id": uid, "email": f"{uid}@example.com", "role": role} for uid, role, _ in rows],
        )
        await database.execute_many(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES (:id, :uid, :exp)",
            [{"id": sid, "uid": uid, "exp": expires_at} for uid, _, sid in rows],
        )


async def populate_redis(redis: Any, users: Iterable[tuple[str, str, str]]) -> None:
    """One ``session:<id>`` JSON blob per ``(user_id, role, session_id)``."""
    async with redis.pipeline(transaction=False) as pipe:
        for uid, role, sid in users:
            pipe.set(f"session:{sid}", json.dumps({"uid": uid, "role": role}),
                     ex=SESSION_TTL)
        await pipe.execute()
