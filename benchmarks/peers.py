"""The real packages a user would pick instead, set up as their documentation shows.

- starsessions (``SessionMiddleware`` + ``SessionAutoloadMiddleware``, 14-day lifetime,
  ``cookie_https_only=False`` for plain http): a session-id cookie, the data in a store;
  its ``InMemoryStore`` (the worker's own memory) and its ``RedisStore`` (redis-py
  client passed as ``connection``). It loads the session before the route and, because
  the session is not empty, writes it back and sets the cookie again on every response.
- fastapi-users (``benchmarks/fastapi_users_app.py``): a FastAPI app, a
  ``CookieTransport`` and one of its strategies; every request resolves
  ``current_user(active=True)``, which reads the token and loads the user row from
  PostgreSQL through SQLAlchemy (asyncpg).

The session rows behind the starsessions cookies are written in the store's own format
(its JSON serializer, its metadata, its key prefix), as the home-made stores' rows are;
the fastapi-users cookies come from the app's login route (``AuthenticationBackend.login``:
the strategy writes the token, the transport sets the cookie), without the password check.
Nothing here is imported before a strategy is built, so a missing package only skips its
strategies.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from starlette.middleware import Middleware

from benchmarks.app import BenchConfig, Setup

Row = tuple[str, str, str]  # user id, role, session id

STARSESSIONS_LIFETIME = 14 * 24 * 3600  # the docs' example: 14 days
STARSESSIONS_COOKIE = "session"  # starsessions' default cookie name
STARSESSIONS_PREFIX = "starsessions."  # RedisStore's default key prefix
MEMORY_SNAPSHOT = "starsessions-memory.json"


def data_dir(config: BenchConfig) -> Path:
    """The run's folder for files the server processes read (made on first use)."""
    if not config.data_dir:
        config.data_dir = tempfile.mkdtemp(prefix="ajs-bench-data-")
    return Path(config.data_dir)


def starsessions_payload(uid: str, role: str, now: float) -> bytes:
    """A session as starsessions stores it: its JSON serializer over the data and the
    ``__metadata__`` its handler keeps (lifetime, created, last access)."""
    from starsessions.serializers import JsonSerializer

    metadata = {"lifetime": STARSESSIONS_LIFETIME, "created": now, "last_access": now}
    return JsonSerializer().serialize({"uid": uid, "role": role, "__metadata__": metadata})


def starsessions_middleware(store: Any) -> list[Middleware]:
    from starsessions import SessionAutoloadMiddleware, SessionMiddleware

    return [
        Middleware(SessionMiddleware, store=store, lifetime=STARSESSIONS_LIFETIME,
                   cookie_https_only=False),
        Middleware(SessionAutoloadMiddleware),
    ]


def starsessions_memory(config: BenchConfig) -> Setup:
    """starsessions with its ``InMemoryStore``, loaded at startup with the run's sessions
    (each worker process has its own copy, as it would in production)."""
    from starsessions import InMemoryStore

    store = InMemoryStore()
    snapshot = data_dir(config) / MEMORY_SNAPSHOT

    async def connect() -> None:
        saved = json.loads(snapshot.read_text())
        store.data.update({sid: payload.encode() for sid, payload in saved.items()})

    return Setup(starsessions_middleware(store), connect)


def starsessions_redis(config: BenchConfig) -> Setup:
    """starsessions with its ``RedisStore`` on a redis-py client, closed at shutdown."""
    import redis.asyncio as aioredis
    from starsessions.stores.redis import RedisStore

    client = aioredis.Redis.from_url(config.urls["redis"])

    async def disconnect() -> None:
        await client.aclose()

    return Setup(starsessions_middleware(RedisStore(connection=client)),
                 disconnect=disconnect)


async def fill_starsessions_memory(config: BenchConfig, rows: Sequence[Row]) -> None:
    """The snapshot each server process loads into its ``InMemoryStore``."""
    now = time.time()
    saved = {sid: starsessions_payload(uid, role, now).decode() for uid, role, sid in rows}
    path = data_dir(config) / MEMORY_SNAPSHOT
    path.write_text(json.dumps(saved))


async def fill_starsessions_redis(config: BenchConfig, rows: Sequence[Row]) -> None:
    import redis.asyncio as aioredis

    now = time.time()
    client = aioredis.Redis.from_url(config.urls["redis"])
    try:
        async with client.pipeline(transaction=False) as pipe:
            for uid, role, sid in rows:
                pipe.set(STARSESSIONS_PREFIX + sid, starsessions_payload(uid, role, now),
                         ex=STARSESSIONS_LIFETIME)
            await pipe.execute()
    finally:
        await client.aclose()


FastAPIUsersKind = Literal["database", "redis", "jwt"]


def fastapi_users(kind: FastAPIUsersKind) -> Callable[[BenchConfig], Setup]:
    """The setup of fastapi-users with its ``kind`` strategy."""
    def setup(config: BenchConfig) -> Setup:
        from benchmarks import fastapi_users_app

        return fastapi_users_app.setup(config, kind)

    return setup


async def fill_fastapi_users(config: BenchConfig, rows: Sequence[Row]) -> None:
    """fastapi-users' user and access-token tables, one user per row."""
    from benchmarks import fastapi_users_app

    await fastapi_users_app.fill(config, rows)


def fastapi_none(config: BenchConfig) -> Setup:
    """A FastAPI app with the same route and no session: FastAPI's own share of the
    fastapi-users rows."""
    from benchmarks import fastapi_users_app

    return fastapi_users_app.no_session()
