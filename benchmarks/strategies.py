"""Every session strategy the suite measures, each one entry of ``STRATEGIES``.

A strategy says what it does on a request, how its middleware is set up, how the route
reads the user, how its cookies are made (through its own login path, or session rows
put in a store), what it needs (modules, a server the run starts), and how the suite
treats it. ``run.py``, ``report.py`` and the tight loops read everything from here.
Adding a strategy is adding one entry (and its setup function, when it is new).
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from starlette.middleware import Middleware
from starlette.requests import Request

from benchmarks import dbsession
from benchmarks.app import FIXED_USER, BenchConfig, Login, ReadUser, Setup, make_app
from benchmarks.inprocess import BenchApp
from support.servers import PostgresServer, RedisServer, Server

Row = tuple[str, str, str]  # user id, role, session id
Store = Callable[[BenchConfig, Sequence[Row]], Awaitable[None]]


# Services: servers the run starts (temp dir, loopback) for the strategies that need them

async def _median_ms(call: Callable[[], Awaitable[object]]) -> float:
    for _ in range(20):
        await call()
    samples = []
    for _ in range(200):
        t0 = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


async def probe_postgres(url: str) -> float:
    """Median ms of sequential ``SELECT 1`` with asyncpg."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(url)
    try:
        return await _median_ms(lambda: conn.fetchval("SELECT 1"))
    finally:
        await conn.close()


async def probe_redis(url: str) -> float:
    """Median ms of sequential ``PING`` with redis-py."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        return await _median_ms(client.ping)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Service:
    """A server the run starts for the strategies that need it; ``probe`` times one
    round trip (ms, median) with the client those strategies use."""

    name: str
    server: Callable[[], Server]
    probe: Callable[[str], Awaitable[float]]


POSTGRES = Service("postgres", PostgresServer, probe_postgres)
REDIS = Service("redis", RedisServer, probe_redis)


# How the route reads the user, and how a user signs in

def read_fixed(request: Request) -> tuple[str | None, str | None]:
    return FIXED_USER


def read_session(request: Request) -> tuple[str | None, str | None]:
    session = request.session
    return session.get("uid"), session.get("role")


def read_jwt(request: Request) -> tuple[str | None, str | None]:
    from asgi_jwt_session import auth

    session = auth(request)
    if session is None or session.user is None:
        return None, None
    return session.user.id, session.user.role


def session_login(request: Request, uid: str, role: str) -> None:
    request.session["uid"] = uid
    request.session["role"] = role


def jwt_login(request: Request, uid: str, role: str) -> None:
    from asgi_jwt_session import login

    login(request, uid, role)


# Middleware set-ups

def no_session(config: BenchConfig) -> Setup:
    return Setup()


def starlette_session(config: BenchConfig) -> Setup:
    from starlette.middleware.sessions import SessionMiddleware

    return Setup([Middleware(SessionMiddleware, secret_key=config.secret)])


def jwt_session(cache: bool) -> Callable[[BenchConfig], Setup]:
    """``JWTSessionMiddleware`` with its decoded-token cache, or with none."""
    def setup(config: BenchConfig) -> Setup:
        from asgi_jwt_session import JWTSessionMiddleware

        cache_size = config.cache_size if cache else 0
        return Setup([Middleware(JWTSessionMiddleware, secret_key=config.secret,
                                 cache_size=cache_size)])

    return setup


def sqlite_session(config: BenchConfig) -> Setup:
    from databases import Database

    database = Database(f"sqlite+aiosqlite:///{config.sqlite_path}")
    return Setup([Middleware(dbsession.DatabaseSessionMiddleware, database=database)],
                 database.connect, database.disconnect)


def postgres_session(config: BenchConfig) -> Setup:
    from databases import Database

    database = Database(config.urls[POSTGRES.name], min_size=config.pool_size,
                        max_size=config.pool_size)
    return Setup([Middleware(dbsession.DatabaseSessionMiddleware, database=database)],
                 database.connect, database.disconnect)


def asyncpg_session(config: BenchConfig) -> Setup:
    import asyncpg

    holder = dbsession.PoolHolder()

    async def connect() -> None:
        holder.pool = await asyncpg.create_pool(
            config.urls[POSTGRES.name], min_size=config.pool_size,
            max_size=config.pool_size, reset=dbsession.no_reset,
        )

    async def disconnect() -> None:
        if holder.pool is not None:
            await holder.pool.close()

    return Setup([Middleware(dbsession.AsyncpgSessionMiddleware, pool=holder)],
                 connect, disconnect)


def redis_session(config: BenchConfig) -> Setup:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(config.urls[REDIS.name])

    async def disconnect() -> None:
        await client.aclose()

    return Setup([Middleware(dbsession.RedisSessionMiddleware, redis=client)],
                 disconnect=disconnect)


# Stores: the session rows behind the session-id cookies (filled once per run)

async def fill_sqlite(config: BenchConfig, rows: Sequence[Row]) -> None:
    from databases import Database

    database = Database(f"sqlite+aiosqlite:///{config.sqlite_path}")
    await database.connect()
    try:
        await dbsession.populate_database(database, rows)
    finally:
        await database.disconnect()


async def fill_postgres(config: BenchConfig, rows: Sequence[Row]) -> None:
    from databases import Database

    database = Database(config.urls[POSTGRES.name])
    await database.connect()
    try:
        await dbsession.populate_database(database, rows)
        await database.execute("ANALYZE")
    finally:
        await database.disconnect()


async def fill_redis(config: BenchConfig, rows: Sequence[Row]) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(config.urls[REDIS.name])
    try:
        await dbsession.populate_redis(client, rows)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Strategy:
    """One way of keeping a session, and how the suite treats it.

    Cookies come from ``login`` (the app's own login route) or, with ``store``, are
    session ids whose rows ``store`` puts in place; the baseline has neither and carries
    the longest cookie of the run without reading it.
    """

    name: str
    does: str  # what it does on an ordinary request (copied into the report)
    setup: Callable[[BenchConfig], Setup]
    read_user: ReadUser = read_session
    login: Login | None = None
    store: Store | None = None
    service: Service | None = None  # a server the run starts for it
    requires: tuple[str, ...] = ()  # modules it imports; skipped when one is missing
    baseline: bool = False  # every cost is this strategy's time subtracted
    reference: bool = False  # every cost is also given as a ratio to this one's
    waits: bool = False  # waits on I/O on every request: measured in its own group
    warm_all: bool = False  # the warm-up sends every user once (fills a cache)
    first_sight: bool = False  # 1 request in ``fresh_every`` carries a never-seen cookie
    scaling: bool = False  # in the run over 1..N uvicorn workers
    color: str = ""  # chart colour; "" for the next free one (``color_of``)

    def missing(self) -> str | None:
        """Why this strategy cannot run here (a module it needs does not import), or None."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except Exception as exc:  # any failure to import is a reason to skip; say which
                return f"{module} is not importable: {exc}"
        return None

    def build(self, config: BenchConfig, bare: bool = False) -> BenchApp:
        """This strategy's app (see :func:`benchmarks.app.make_app`)."""
        return make_app(self.name, self.setup(config), self.read_user, self.login, bare)


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("none", "no session middleware; the route answers a fixed user",
             no_session, read_user=read_fixed, baseline=True, scaling=True),
    Strategy("starlette-signed", "Starlette SessionMiddleware: parse cookie, HMAC-SHA1 "
             "verify (itsdangerous), base64 + json decode",
             starlette_session, login=session_login, requires=("itsdangerous",)),
    Strategy("jwt-warm", "JWTSessionMiddleware with its decoded-token LRU cache: parse "
             "cookie, cache hit, exp check",
             jwt_session(cache=True), read_user=read_jwt, login=jwt_login,
             requires=("asgi_jwt_session",), reference=True, warm_all=True, scaling=True),
    Strategy("jwt-mix", "jwt-warm, many users: 1 request in N carries a token the "
             "process has never seen (decrypt), the rest hit the cache",
             jwt_session(cache=True), read_user=read_jwt, login=jwt_login,
             requires=("asgi_jwt_session",), warm_all=True, first_sight=True,
             color="#e377c2"),
    Strategy("jwt-cold", "JWTSessionMiddleware, cache_size=0: parse cookie, JWE decrypt "
             "(dir + A256GCM) + claim checks on every request",
             jwt_session(cache=False), read_user=read_jwt, login=jwt_login,
             requires=("asgi_jwt_session",), reference=True, scaling=True),
    Strategy("db-sqlite", "databases + aiosqlite: session-id cookie, one fetch_one of a "
             "session+user join",
             sqlite_session, store=fill_sqlite, requires=("databases", "aiosqlite"),
             waits=True),
    Strategy("db-postgres", "databases + asyncpg: session-id cookie, one fetch_one of a "
             "session+user join (pool acquire, query, reset on release)",
             postgres_session, store=fill_postgres, service=POSTGRES,
             requires=("databases", "asyncpg"), waits=True, scaling=True),
    Strategy("db-postgres-tuned", "raw asyncpg pool: session-id cookie, prepared join, "
             "one round trip, no reset on release",
             asyncpg_session, store=fill_postgres, service=POSTGRES, requires=("asyncpg",),
             waits=True, scaling=True, color="#17becf"),
    Strategy("redis", "redis-py asyncio: session-id cookie, one GET of a JSON blob, "
             "json.loads",
             redis_session, store=fill_redis, service=REDIS, requires=("redis",),
             waits=True, scaling=True),
)

BASELINE = next(s for s in STRATEGIES if s.baseline)
REFERENCES = tuple(s.name for s in STRATEGIES if s.reference)


def by_name(name: str) -> Strategy:
    """The strategy called ``name``; ValueError naming the known ones otherwise."""
    for strategy in STRATEGIES:
        if strategy.name == name:
            return strategy
    raise ValueError(f"unknown strategy {name!r}; known: "
                     f"{', '.join(s.name for s in STRATEGIES)}")


TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
         "#7f7f7f", "#bcbd22", "#17becf")  # matplotlib's default colour cycle


def color_of(name: str) -> str:
    """The strategy's chart colour: its own, else the next of ``TAB10`` that no strategy
    claims; grey for a name not in the registry."""
    claimed = {s.color for s in STRATEGIES if s.color}
    free = [c for c in TAB10 if c not in claimed]
    auto = 0
    for strategy in STRATEGIES:
        if strategy.name == name:
            return strategy.color or free[auto % len(free)]
        auto += 0 if strategy.color else 1
    return "grey"


# The claims a run is checked against (reported as met / missed)

@dataclass(frozen=True)
class Target:
    """``value(a) op threshold``: a session cost (µs), a cost ratio ``a / b`` or a
    req/s ratio ``a / b`` (1 worker)."""

    key: str
    kind: Literal["cost", "cost ratio", "rps ratio"]
    a: str
    b: str
    op: Literal["<=", ">="]
    threshold: float

    @property
    def what(self) -> str:
        if self.kind == "cost":
            return f"{self.a} session cost over {BASELINE.name} (median, µs)"
        if self.kind == "cost ratio":
            return f"{self.a} cost / {self.b} cost"
        return f"{self.a} req/s / {self.b} req/s (1 worker)"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.threshold if self.op == "<=" else value >= self.threshold


TARGETS: tuple[Target, ...] = (
    Target("warm_cost_us", "cost", "jwt-warm", "", "<=", 3.0),
    Target("warm_vs_starlette", "cost ratio", "jwt-warm", "starlette-signed", "<=", 0.3),
    Target("cold_cost_us", "cost", "jwt-cold", "", "<=", 30.0),
    Target("db_postgres_vs_warm", "cost ratio", "db-postgres", "jwt-warm", ">=", 100.0),
    Target("db_postgres_tuned_vs_warm", "cost ratio", "db-postgres-tuned", "jwt-warm",
           ">=", 30.0),
    Target("http_warm_vs_none", "rps ratio", "jwt-warm", "none", ">=", 0.95),
    Target("http_warm_vs_db_postgres", "rps ratio", "jwt-warm", "db-postgres", ">=", 3.0),
    Target("http_warm_vs_db_sqlite", "rps ratio", "jwt-warm", "db-sqlite", ">=", 9.0),
)

