"""The benchmark app: one Starlette app, one route that reads the user id and role, and a
factory per session strategy.

The route is the same for every strategy; only the middleware in front of it and the
one line that reads the user differ. ``GET /`` answers ``"<user id> <role>"`` (200) or
401 when the request carries no valid session.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

from benchmarks import dbsession

STRATEGIES: tuple[str, ...] = (
    "none",
    "starlette-signed",
    "jwt-cold",
    "jwt-warm",
    "db-sqlite",
    "db-postgres",
    "db-postgres-tuned",
    "redis",
)

# What each strategy does on an ordinary request (copied into the report).
DOES: dict[str, str] = {
    "none": "no session middleware; the route answers a fixed user",
    "starlette-signed": "Starlette SessionMiddleware: parse cookie, HMAC-SHA1 verify "
    "(itsdangerous), base64 + json decode",
    "jwt-cold": "JWTSessionMiddleware, cache_size=0: parse cookie, JWE decrypt "
    "(dir + A256GCM) + claim checks on every request",
    "jwt-warm": "JWTSessionMiddleware with its decoded-token LRU cache: parse cookie, "
    "cache hit, exp check",
    "db-sqlite": "databases + aiosqlite: session-id cookie, one fetch_one of a "
    "session+user join",
    "db-postgres": "databases + asyncpg: session-id cookie, one fetch_one of a "
    "session+user join (pool acquire, query, reset on release)",
    "db-postgres-tuned": "raw asyncpg pool: session-id cookie, prepared join, one "
    "round trip, no reset on release",
    "redis": "redis-py asyncio: session-id cookie, one GET of a JSON blob, json.loads",
}

# Which outside thing a strategy needs; the suite skips it when that is missing.
NEEDS: dict[str, str] = {
    "starlette-signed": "itsdangerous",
    "jwt-cold": "jwt",
    "jwt-warm": "jwt",
    "db-postgres": "postgres",
    "db-postgres-tuned": "postgres",
    "redis": "redis",
}

ROLES = ("USER", "ORG_ADMIN", "ADMIN")


def user_id(index: int) -> str:
    return f"u{index:06d}"


def role_for(index: int) -> str:
    if index % 50 == 0:
        return "ADMIN"
    if index % 10 == 0:
        return "ORG_ADMIN"
    return "USER"


@dataclass
class BenchConfig:
    """Everything a strategy's app needs; JSON round-trips into the uvicorn workers."""

    secret: str
    pool_size: int = 32
    cache_size: int = 4096  # jwt-warm's decoded-token cache
    sqlite_path: str = ""
    pg_dsn: str = ""
    redis_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        return cls(**json.loads(text))


@dataclass
class BenchApp:
    """A strategy's ASGI app and its connection lifecycle (used in process and by the
    app's lifespan under uvicorn)."""

    name: str
    app: ASGIApp
    connect: Callable[[], Awaitable[None]]
    disconnect: Callable[[], Awaitable[None]]


async def _nothing() -> None:
    return None


def _read_none(request: Request) -> tuple[str | None, str | None]:
    return "u000001", "USER"


def _read_session(request: Request) -> tuple[str | None, str | None]:
    session = request.session
    return session.get("uid"), session.get("role")


def _read_jwt(request: Request) -> tuple[str | None, str | None]:
    from asgi_jwt_session import auth

    session = auth(request)
    if session is None or session.user is None:
        return None, None
    return session.user.id, session.user.role


def _routes(read_user: Callable[[Request], tuple[str | None, str | None]],
            login: Callable[[Request, str, str], None] | None) -> list[Route]:
    async def whoami(request: Request) -> Response:
        uid, role = read_user(request)
        if uid is None:
            return PlainTextResponse("not signed in", status_code=401)
        return PlainTextResponse(f"{uid} {role}")

    routes = [Route("/", whoami)]
    if login is not None:
        async def login_route(request: Request) -> Response:
            uid = request.path_params["uid"]
            login(request, uid, request.query_params.get("role", "USER"))
            return PlainTextResponse("ok")

        routes.append(Route("/login/{uid}", login_route))
    return routes


def _starlette_login(request: Request, uid: str, role: str) -> None:
    request.session["uid"] = uid
    request.session["role"] = role


def _jwt_login(request: Request, uid: str, role: str) -> None:
    from asgi_jwt_session import login

    login(request, uid, role)


def build(name: str, config: BenchConfig) -> BenchApp:
    """The app for strategy ``name``; connections open in ``connect()``."""
    connect: Callable[[], Awaitable[None]] = _nothing
    disconnect: Callable[[], Awaitable[None]] = _nothing
    middleware: list[Middleware] = []
    login: Callable[[Request, str, str], None] | None = None
    read_user = _read_session

    if name == "none":
        read_user = _read_none
    elif name == "starlette-signed":
        from starlette.middleware.sessions import SessionMiddleware

        middleware = [Middleware(SessionMiddleware, secret_key=config.secret)]
        login = _starlette_login
    elif name in ("jwt-cold", "jwt-warm"):
        from asgi_jwt_session import JWTSessionMiddleware

        cache_size = 0 if name == "jwt-cold" else config.cache_size
        middleware = [Middleware(JWTSessionMiddleware, secret_key=config.secret,
                                 cache_size=cache_size)]
        read_user = _read_jwt
        login = _jwt_login
    elif name in ("db-sqlite", "db-postgres"):
        from databases import Database

        if name == "db-sqlite":
            database = Database(f"sqlite+aiosqlite:///{config.sqlite_path}")
        else:
            database = Database(config.pg_dsn, min_size=config.pool_size,
                                max_size=config.pool_size)
        middleware = [Middleware(dbsession.DatabaseSessionMiddleware, database=database)]
        connect, disconnect = database.connect, database.disconnect
    elif name == "db-postgres-tuned":
        import asyncpg

        holder = dbsession.PoolHolder()

        async def connect_pool() -> None:
            holder.pool = await asyncpg.create_pool(
                config.pg_dsn, min_size=config.pool_size, max_size=config.pool_size,
                reset=dbsession.no_reset,
            )

        async def close_pool() -> None:
            if holder.pool is not None:
                await holder.pool.close()

        middleware = [Middleware(dbsession.AsyncpgSessionMiddleware, pool=holder)]
        connect, disconnect = connect_pool, close_pool
    elif name == "redis":
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(config.redis_url)
        middleware = [Middleware(dbsession.RedisSessionMiddleware, redis=client)]

        async def close_redis() -> None:
            await client.aclose()

        disconnect = close_redis
    else:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await connect()
        try:
            yield
        finally:
            await disconnect()

    app = Starlette(routes=_routes(read_user, login), middleware=middleware, lifespan=lifespan)
    return BenchApp(name, app, connect, disconnect)


def app_from_env() -> ASGIApp:
    """uvicorn factory: ``BENCH_STRATEGY`` and ``BENCH_CONFIG`` (JSON) from the environment."""
    config = BenchConfig.from_json(os.environ["BENCH_CONFIG"])
    return build(os.environ["BENCH_STRATEGY"], config).app


# Direct ASGI calls (the in-process benchmark and cookie minting use these).

def make_scope(path: str = "/", cookie: str | None = None) -> dict[str, Any]:
    """A realistic HTTP scope, with the headers a browser sends."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
        (b"accept", b"text/plain,*/*;q=0.8"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b"en-US,en;q=0.5"),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    path_only, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def receive_empty() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def call(app: ASGIApp, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through ``app``: status, response headers, body."""
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    body = bytearray()

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive_empty, send)
    return status, headers, bytes(body)


def cookie_from_set_cookie(headers: Sequence[tuple[bytes, bytes]]) -> str:
    """The Cookie header a browser would send back after these Set-Cookie lines."""
    pairs = []
    for name, value in headers:
        if name.lower() == b"set-cookie":
            pairs.append(value.decode("latin-1").split(";", 1)[0].strip())
    return "; ".join(pairs)


async def mint_cookies(bench_app: BenchApp, users: Sequence[tuple[str, str]]) -> list[str]:
    """Sign each ``(user_id, role)`` in through the app's ``/login/{uid}`` route."""
    cookies = []
    for uid, role in users:
        status, headers, _ = await call(bench_app.app, make_scope(f"/login/{uid}?role={role}"))
        cookie = cookie_from_set_cookie(headers)
        if status != 200 or not cookie:
            raise RuntimeError(f"{bench_app.name}: login of {uid} gave {status}, no cookie")
        cookies.append(cookie)
    return cookies


def temp_sqlite_path() -> str:
    fd, path = tempfile.mkstemp(prefix="ajs-bench-", suffix=".sqlite3")
    os.close(fd)
    os.unlink(path)
    return path
