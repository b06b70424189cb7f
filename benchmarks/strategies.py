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

from asgi_jwt_session import auth, login
from benchmarks import dbsession, peers
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


# How the route reads the user, and how a user signs in (resolved at import, so that no
# request of one strategy pays for an import)

def read_fixed(request: Request) -> tuple[str | None, str | None]:
    return FIXED_USER


def read_session(request: Request) -> tuple[str | None, str | None]:
    session = request.session
    return session.get("uid"), session.get("role")


def read_jwt(request: Request) -> tuple[str | None, str | None]:
    session = auth(request)  # marks the session accessed, like request.session
    if session is None or session.user is None:
        return None, None
    return session.user.id, session.user.role


def session_login(request: Request, uid: str, role: str) -> None:
    request.session["uid"] = uid
    request.session["role"] = role


def jwt_login(request: Request, uid: str, role: str) -> None:
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


Keeps = Literal["", "cookie", "server", "memory", "cookie + user row"]
KEEPS = {
    "cookie": "the session in the cookie (nothing stored on the server)",
    "server": "a session id in the cookie, the session in a server (database or Redis)",
    "memory": "a session id in the cookie, the session in the worker process's memory "
              "(not shared between workers, lost on restart)",
    "cookie + user row": "a signed token in the cookie, the user's row read from the "
                         "database on every request",
}


@dataclass(frozen=True)
class Strategy:
    """One way of keeping a session, and how the suite treats it.

    Cookies come from the app's own login route (``login``, or ``own_login`` when the
    setup builds its whole app) or, with ``store`` alone, are session ids in the
    ``cookie`` whose rows ``store`` puts in place; the baseline has neither and carries
    the longest cookie of the run without reading it.
    """

    name: str
    does: str  # what it does on an ordinary request (copied into the report)
    setup: Callable[[BenchConfig], Setup]
    read_user: ReadUser = read_session
    login: Login | None = None
    own_login: bool = False  # the setup's own app has GET /login/{uid} (see Setup.app)
    store: Store | None = None  # puts the rows in place (before any cookie is minted)
    cookie: str = dbsession.COOKIE  # the session-id cookie of a ``store`` strategy
    service: Service | None = None  # a server the run starts for it
    services: tuple[Service, ...] = ()  # more servers it needs
    requires: tuple[str, ...] = ()  # modules it imports; skipped when one is missing
    keeps: Keeps = ""  # where the session lives (see ``KEEPS``)
    package: str = ""  # the distribution a peer comes from ("" for home-made / this one)
    framework: Literal["starlette", "fastapi"] = "starlette"
    baseline: bool = False  # every cost is this strategy's time subtracted
    reference: Literal["", "median", "mean"] = ""  # costs are also ratios to this stat
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

    @property
    def signs_in(self) -> bool:
        """Whether its cookies come from its app's login route."""
        return self.login is not None or self.own_login

    @property
    def all_services(self) -> tuple[Service, ...]:
        return (self.service, *self.services) if self.service else self.services

    def build(self, config: BenchConfig, bare: bool = False,
              read_user: ReadUser | None = None) -> BenchApp:
        """This strategy's app (see :func:`benchmarks.app.make_app`); ``read_user``
        replaces how the route reads the user (``read_fixed``: it does not)."""
        return make_app(self.name, self.setup(config), read_user or self.read_user,
                        self.login, bare)


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("none", "no session middleware; the route answers a fixed user",
             no_session, read_user=read_fixed, baseline=True, scaling=True),
    Strategy("starlette-signed", "Starlette SessionMiddleware: parse cookie, HMAC-SHA1 "
             "verify (itsdangerous), base64 + json decode",
             starlette_session, login=session_login, requires=("itsdangerous",),
             keeps="cookie", package="starlette", scaling=True),
    Strategy("jwt-warm", "JWTSessionMiddleware with its decoded-token LRU cache: parse "
             "cookie, cache hit, exp check",
             jwt_session(cache=True), read_user=read_jwt, login=jwt_login, keeps="cookie",
             reference="median", warm_all=True, scaling=True),
    Strategy("jwt-mix", "jwt-warm, many users: 1 request in N carries a token the "
             "process has never seen (decrypt), the rest hit the cache",
             jwt_session(cache=True), read_user=read_jwt, login=jwt_login, keeps="cookie",
             reference="mean", warm_all=True, first_sight=True, scaling=True,
             color="#e377c2"),
    Strategy("jwt-cold", "JWTSessionMiddleware, cache_size=0: parse cookie, JWE decrypt "
             "(dir + A256GCM) + claim checks on every request",
             jwt_session(cache=False), read_user=read_jwt, login=jwt_login, keeps="cookie",
             reference="median"),
    Strategy("db-sqlite", "databases + aiosqlite: session-id cookie, one fetch_one of a "
             "session+user join",
             sqlite_session, store=fill_sqlite, requires=("databases", "aiosqlite"),
             keeps="server", waits=True),
    Strategy("db-postgres", "databases + asyncpg: session-id cookie, one fetch_one of a "
             "session+user join (pool acquire, query, reset on release)",
             postgres_session, store=fill_postgres, service=POSTGRES,
             requires=("databases", "asyncpg"), keeps="server", waits=True, scaling=True),
    Strategy("db-postgres-tuned", "raw asyncpg pool: session-id cookie, prepared join, "
             "one round trip, no reset on release",
             asyncpg_session, store=fill_postgres, service=POSTGRES, requires=("asyncpg",),
             keeps="server", waits=True, color="#17becf"),
    Strategy("redis", "redis-py asyncio: session-id cookie, one GET of a JSON blob, "
             "json.loads",
             redis_session, store=fill_redis, service=REDIS, requires=("redis",),
             keeps="server", waits=True),
    Strategy("starsessions-memory", "starsessions, InMemoryStore: session-id cookie, "
             "autoload (dict read, json decode), then on the response json encode, store "
             "write and Set-Cookie, every request",
             peers.starsessions_memory, store=peers.fill_starsessions_memory,
             cookie=peers.STARSESSIONS_COOKIE, requires=("starsessions",), keeps="memory",
             package="starsessions"),
    Strategy("starsessions-redis", "starsessions, RedisStore: session-id cookie, autoload "
             "(Redis GET, json decode), then on the response json encode, Redis SET and "
             "Set-Cookie, every request",
             peers.starsessions_redis, store=peers.fill_starsessions_redis,
             cookie=peers.STARSESSIONS_COOKIE, service=REDIS,
             requires=("starsessions", "redis"), keeps="server", package="starsessions",
             waits=True, scaling=True),
    Strategy("fastapi-none", "FastAPI app, same route, no session: FastAPI's own share "
             "of the fastapi-users rows",
             peers.fastapi_none, read_user=read_fixed, requires=("fastapi",),
             framework="fastapi", color="#bbbbbb"),
    Strategy("fastapi-users-db", "fastapi-users, CookieTransport + DatabaseStrategy "
             "(SQLAlchemy access-token table, asyncpg): token row, then user row; "
             "FastAPI dependencies",
             peers.fastapi_users("database"), own_login=True,
             store=peers.fill_fastapi_users, service=POSTGRES,
             requires=("fastapi_users", "fastapi_users_db_sqlalchemy", "asyncpg"),
             keeps="server", package="fastapi-users", framework="fastapi", waits=True),
    Strategy("fastapi-users-redis", "fastapi-users, CookieTransport + RedisStrategy: "
             "Redis GET of the user id, then the user row (SQLAlchemy, asyncpg)",
             peers.fastapi_users("redis"), own_login=True, store=peers.fill_fastapi_users,
             service=POSTGRES, services=(REDIS,),
             requires=("fastapi_users", "fastapi_users_db_sqlalchemy", "asyncpg", "redis"),
             keeps="server", package="fastapi-users", framework="fastapi", waits=True),
    Strategy("fastapi-users-jwt", "fastapi-users, CookieTransport + JWTStrategy: HS256 "
             "verify (PyJWT), then the user row (SQLAlchemy, asyncpg)",
             peers.fastapi_users("jwt"), own_login=True, store=peers.fill_fastapi_users,
             service=POSTGRES,
             requires=("fastapi_users", "fastapi_users_db_sqlalchemy", "asyncpg"),
             keeps="cookie + user row", package="fastapi-users", framework="fastapi",
             waits=True),
)

BASELINE = next(s for s in STRATEGIES if s.baseline)
# (name, statistic): the medians first, then the means
REFERENCES: tuple[tuple[str, str], ...] = tuple(sorted(
    ((s.name, s.reference) for s in STRATEGIES if s.reference),
    key=lambda ref: ref[1] != "median"))


def by_name(name: str) -> Strategy:
    """The strategy called ``name``; ValueError naming the known ones otherwise."""
    for strategy in STRATEGIES:
        if strategy.name == name:
            return strategy
    raise ValueError(f"unknown strategy {name!r}; known: "
                     f"{', '.join(s.name for s in STRATEGIES)}")


TAB10 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
         "#7f7f7f", "#bcbd22", "#17becf",  # matplotlib's default colour cycle
         "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94")  # tab20's pales


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
    """``value(a) op threshold``: a session cost (µs) in process or inside uvicorn, a
    cost ratio ``a / b`` or a req/s ratio ``a / b`` (1 worker)."""

    key: str
    kind: Literal["cost", "server cost", "cost ratio", "rps ratio"]
    a: str
    b: str
    op: Literal["<=", ">="]
    threshold: float

    @property
    def what(self) -> str:
        if self.kind == "cost":
            return f"{self.a} session cost over {BASELINE.name} (median, µs)"
        if self.kind == "server cost":
            return (f"{self.a} cost inside uvicorn over {BASELINE.name} (median, µs, "
                    "batches)")
        if self.kind == "cost ratio":
            return f"{self.a} cost / {self.b} cost"
        return f"{self.a} req/s / {self.b} req/s (1 worker)"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.threshold if self.op == "<=" else value >= self.threshold


TARGETS: tuple[Target, ...] = (
    Target("warm_cost_us", "cost", "jwt-warm", "", "<=", 3.0),
    Target("warm_vs_starlette", "cost ratio", "jwt-warm", "starlette-signed", "<=", 0.2),
    Target("cold_cost_us", "cost", "jwt-cold", "", "<=", 30.0),
    Target("cold_vs_starlette", "cost ratio", "jwt-cold", "starlette-signed", "<=", 1.0),
    Target("db_postgres_vs_warm", "cost ratio", "db-postgres", "jwt-warm", ">=", 100.0),
    Target("db_postgres_tuned_vs_warm", "cost ratio", "db-postgres-tuned", "jwt-warm",
           ">=", 30.0),
    Target("server_warm_cost_us", "server cost", "jwt-warm", "", "<=", 5.0),
    Target("http_warm_vs_none", "rps ratio", "jwt-warm", "none", ">=", 0.92),
    Target("http_warm_vs_starlette", "rps ratio", "jwt-warm", "starlette-signed", ">=", 1.3),
    Target("http_warm_vs_db_postgres", "rps ratio", "jwt-warm", "db-postgres", ">=", 3.0),
    Target("http_warm_vs_db_sqlite", "rps ratio", "jwt-warm", "db-sqlite", ">=", 9.0),
)
