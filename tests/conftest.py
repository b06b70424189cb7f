"""What the tests share: the secrets, the test app and its client, a fake clock, a fake
user loader, a SQLite store, the servers (PostgreSQL, Redis), node and Auth.js; and the
markers (``postgres``, ``redis``, ``browser``, ``node``), set from the fixtures a test
uses."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import anyio.from_thread
import anyio.lowlevel
import httpx
import pytest
from hypothesis import settings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Lifespan
from starlette.websockets import WebSocket

from asgi_jwt_session import JWTSessionMiddleware, auth, login, logout
from support.servers import PostgresServer, RedisServer, ServerUnavailable
from tests.node_helper import NodeHelper, NodeUnavailable

SECRET = "tests-secret-0123456789abcdef-0123456789"
OLD_SECRET = "tests-old-secret-0123456789abcdef-01234"  # rotated out, still read
OTHER_SECRET = "someone-else's-secret-0123456789abcdefgh"  # another app's

IN_CI = os.environ.get("CI", "").lower() == "true"

H = TypeVar("H", bound=NodeHelper)


def unavailable(reason: str) -> None:
    """Skip on a bare laptop; under CI=true a missing server or tool is a failure."""
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


# --- markers -------------------------------------------------------------------------------

MARKED_BY_FIXTURE = {
    "postgres": {"postgres", "own_postgres"},
    "browser": {"browser", "playwright", "dbsc_browser"},
    "node": {"node", "authjs", "betterauth"},
    "redis": {"redis_server", "persistent_redis", "volatile_redis"},
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        for marker, fixtures in MARKED_BY_FIXTURE.items():
            if used & fixtures:
                item.add_marker(marker)


# HYPOTHESIS_PROFILE=fast (make test-fast): a tenth of the property tests' examples.
settings.register_profile("fast", max_examples=10)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- the test app ----------------------------------------------------------------------------


async def sign_in_endpoint(request: Request) -> JSONResponse:
    """``/login?user=..&role=..&version=..``; any other parameter is a claim."""
    claims = dict(request.query_params)
    user, role = claims.pop("user"), claims.pop("role", "USER")
    login(request, user, role, version=int(claims.pop("version", "1")), **claims)
    return JSONResponse({"jti": request.session.jti})


async def sign_out_endpoint(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({})


async def me(request: Request) -> JSONResponse:
    """Who is signed in, and the session's data and versions."""
    session = auth(request)
    user = session.user if session is not None else None
    return JSONResponse({
        "id": user.id if user else None,
        "role": user.role if user else None,
        "version": request.session.version,
        "chk": request.session.checked_at,
        "session": dict(request.session),
    })


async def update_session(request: Request) -> JSONResponse:
    request.session.update(await request.json())
    return JSONResponse({"session": dict(request.session)})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": dict(request.session)})


async def plain(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")  # never touches the session


async def ws_session(websocket: WebSocket) -> None:
    await websocket.accept()
    session = auth(websocket)
    await websocket.send_json({"session": dict(websocket.session),
                               "user": session.user.id if session and session.user else None})
    await websocket.close()


ROUTES: list[BaseRoute] = [
    Route("/login", sign_in_endpoint, methods=["GET", "POST"]),
    Route("/logout", sign_out_endpoint),
    Route("/me", me),
    Route("/session", update_session, methods=["POST"]),
    Route("/clear", clear_session, methods=["POST"]),
    Route("/plain", plain),
    WebSocketRoute("/ws", ws_session),
]


def make_app(*routes: BaseRoute, lifespan: Lifespan[Any] | None = None,
             **options: Any) -> Starlette:
    """The test app: ``routes`` and the common ones, under the middleware with ``SECRET``
    (or ``secret_key=``) and ``options``."""
    options.setdefault("secret_key", SECRET)
    return Starlette(routes=[*routes, *ROUTES], lifespan=lifespan,
                     middleware=[Middleware(JWTSessionMiddleware, **options)])


def opening(store: Any) -> Lifespan[Any]:
    """A lifespan that connects ``store`` and creates its tables: with it, ``with
    client_for(app) as client`` runs the app and the store on one event loop, and
    ``client.portal.call(...)`` runs store calls there."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with store:
            await store.create_tables()
            yield

    return lifespan


@pytest.fixture
def client_for(anyio_backend: str) -> Iterator[Callable[..., TestClient]]:
    """``client_for(app)``, or ``client_for(**middleware_options)`` for the test app: a
    TestClient on the test's anyio backend that does not follow redirects. The clients
    of a test share one event loop (``with client:`` runs the app on one of its own)."""
    with anyio.from_thread.start_blocking_portal(anyio_backend) as portal:

        def build(app: ASGIApp | None = None, /, *, base_url: str = "http://testserver",
                  **options: Any) -> TestClient:
            if app is None:
                app = make_app(**options)
            client = TestClient(app, base_url=base_url, backend=anyio_backend,
                                follow_redirects=False)
            client.portal = portal
            return client

        yield build


def sign_in(client: TestClient, user: str = "alice", role: str = "USER",
            **claims: str) -> httpx.Response:
    response = client.get("/login", params={"user": user, "role": role, **claims})
    assert response.status_code == 200, response.text
    return response


def fetch_csrf(client: TestClient, prefix: str = "/auth") -> str:
    """The CSRF token the session endpoints hand out (and set as a cookie)."""
    token: str = client.get(f"{prefix}/session").json()["csrfToken"]
    return token


def set_cookies(response: httpx.Response, name: str | None = None) -> list[str]:
    """The response's Set-Cookie lines (those of cookie ``name`` and its chunks)."""
    lines = response.headers.get_list("set-cookie")
    if name is None:
        return lines
    return [line for line in lines
            if line.split("=", 1)[0] == name or line.startswith(f"{name}.")]


def cookie_value(lines: list[str], name: str = "session") -> str:
    """The value the one Set-Cookie line for ``name`` sets."""
    values = [line.split(";")[0].split("=", 1)[1] for line in lines
              if line.startswith(f"{name}=")]
    assert len(values) == 1, lines
    return values[0]


# --- a fake clock and a fake user loader ------------------------------------------------------


class Clock:
    """A ``time.time`` that stands still until moved: ``clock.now += 300``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Stops ``time.time`` at a whole second; every module reads the time through it."""
    clock = Clock(float(int(time.time())))
    monkeypatch.setattr(time, "time", clock)
    return clock


class Users:
    """A user loader over a dict: ``{user_id: (role, version)}`` (or a ``CheckedUser``,
    or a row-like object). Counts its calls; ``error`` is raised, ``gate`` waited for."""

    def __init__(self, **users: Any) -> None:
        self.users: dict[str, Any] = dict(users)
        self.calls = 0
        self.error: BaseException | None = None
        self.gate: anyio.Event | None = None

    async def __call__(self, user_id: str) -> Any:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.users.get(user_id)


@pytest.fixture
def users() -> Users:
    return Users(alice=("USER", 1))


# --- stores and servers ---------------------------------------------------------------------


@pytest.fixture
def table() -> str:
    """A table of the test's own, so tests on a shared PostgreSQL never meet."""
    return f"users_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Where the ``store`` lives: a SQLite file (a module may point it elsewhere)."""
    return f"sqlite:///{tmp_path / 'roles.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sqlite_or_postgres_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, then the run's real PostgreSQL: a module whose tests run on both
    points its ``database_url`` here."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'roles.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.dsn


@pytest.fixture
async def store(database_url: str, table: str) -> AsyncIterator[Any]:
    """A connected RoleStore with its table created (asyncio: `databases` needs it)."""
    from asgi_jwt_session.store import RoleStore

    async with RoleStore(database_url, table=table) as store:
        await store.create_tables()
        yield store


def running_postgres() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"PostgreSQL: {exc}")
        raise
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (loopback, temp dir)."""
    yield from running_postgres()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, to stop and start again."""
    yield from running_postgres()


def new_database(dsn: str, prefix: str) -> str:
    """The URL of a new, empty database (``prefix`` and a random suffix) on the PostgreSQL
    server of ``dsn``: for code whose table names are fixed."""
    import asyncio

    import asyncpg  # type: ignore[import-untyped]

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()

    asyncio.run(create())
    return f"{dsn.rsplit('/', 1)[0]}/{name}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer()
        server.start()
    except ServerUnavailable as exc:
        unavailable(f"Redis: {exc}")
        raise
    try:
        yield server
    finally:
        server.stop()


# --- decryptions, node and Auth.js -----------------------------------------------------------


class CountingCipher:
    """A cipher (AESGCM, or jwcrypto's content encryption) that notes the token it
    decrypts."""

    def __init__(self, cipher: Any, token: str, calls: list[str]) -> None:
        self.cipher, self.token, self.calls = cipher, token, calls

    def decrypt(self, *args: Any) -> bytes:
        self.calls.append(self.token)
        plaintext: bytes = self.cipher.decrypt(*args)
        return plaintext


@pytest.fixture
def decrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the codecs decrypted, in order (each decryption attempt with a key:
    AES-GCM for ours, jwcrypto's A256CBC-HS512 or A256GCM for Auth.js's): anything
    refused before decryption never shows here."""
    from asgi_jwt_session.authjs import AuthJSWire
    from asgi_jwt_session.tokens import TokenWire

    calls: list[str] = []
    token_decrypt, authjs_decrypt = TokenWire.decrypt, AuthJSWire.decrypt

    def token_wire(self: TokenWire, compact: Any) -> bytes:
        ciphers = self.ciphers
        self.ciphers = {kid: CountingCipher(c, compact.token, calls)  # type: ignore[misc]
                        for kid, c in ciphers.items()}
        try:
            return token_decrypt(self, compact)
        finally:
            self.ciphers = ciphers

    def authjs_wire(self: AuthJSWire, compact: Any) -> bytes:
        encryptions = self.encryptions
        self.encryptions = {enc: CountingCipher(e, compact.token, calls)
                            for enc, e in encryptions.items()}
        try:
            return authjs_decrypt(self, compact)
        finally:
            self.encryptions = encryptions

    monkeypatch.setattr(TokenWire, "decrypt", token_wire)
    monkeypatch.setattr(AuthJSWire, "decrypt", authjs_wire)
    return calls


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary."""
    path = shutil.which("node")
    if path is None:
        unavailable("node is not on PATH")
    assert path is not None
    return path


def run_node(helper: Callable[[str, Path], H], node: str, install: Callable[[Path], Path],
             workdir: Path) -> Iterator[H]:
    """For a fixture to ``yield from``: ``helper`` (a node helper of tests/node_helper.py)
    running in ``install(workdir)``, closed at the end; unavailable when npm cannot
    install it."""
    try:
        workdir = install(workdir)
    except NodeUnavailable as exc:
        unavailable(str(exc))
        raise
    running = helper(node, workdir)
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def authjs(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real ``@auth/core`` (pinned in tests/js/package.json) in one node process."""
    from tests.authjs_node import AuthJS, install

    yield from run_node(AuthJS, node, install, tmp_path_factory.mktemp("authjs"))


@pytest.fixture(scope="session")
def betterauth(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real ``better-auth`` (locked in tests/js/betterauth) in one node process."""
    from tests.betterauth_node import BetterAuth, install

    yield from run_node(BetterAuth, node, install, tmp_path_factory.mktemp("betterauth"))
