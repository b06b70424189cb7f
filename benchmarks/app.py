"""The benchmark app: one route that reads the user id and role, behind whichever session
middleware a strategy sets up.

The route is the same for every strategy; only the middleware in front of it and the
one line that reads the user differ. ``GET /`` answers ``"<user id> <role>"`` (200) or
401 when the request carries no valid session; ``GET /login/{uid}?role=R`` signs a
user in through the strategy's own login path.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from benchmarks.inprocess import BenchApp, call, make_scope, nothing, set_cookies

ReadUser = Callable[[Request], tuple[str | None, str | None]]
Login = Callable[[Request, str, str], None]

FIXED_USER = ("u000001", "USER")  # what the baseline answers without reading a session


@dataclass
class BenchConfig:
    """Everything a strategy's app needs; JSON round-trips into the uvicorn workers."""

    secret: str
    pool_size: int = 32
    cache_size: int = 4096  # the JWT strategies' decoded-token cache
    sqlite_path: str = ""
    data_dir: str = ""  # where a store keeps files the server processes read (a temp dir)
    urls: dict[str, str] = field(default_factory=dict)  # per service: where it listens

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        return cls(**json.loads(text))


@dataclass
class Setup:
    """A strategy's session middleware and the connections it opens and closes.

    ``app``: a whole app the setup built itself, for a peer whose sessions live in its
    framework's routes (fastapi-users' dependencies) rather than in a middleware. It
    answers the same ``GET /`` and ``GET /login/{uid}`` and runs ``connect`` and
    ``disconnect`` in its own lifespan.
    """

    middleware: list[Middleware] = field(default_factory=list)
    connect: Callable[[], Awaitable[None]] = nothing
    disconnect: Callable[[], Awaitable[None]] = nothing
    app: ASGIApp | None = None


def user_id(index: int) -> str:
    return f"u{index:06d}"


def role_for(index: int) -> str:
    if index % 50 == 0:
        return "ADMIN"
    if index % 10 == 0:
        return "ORG_ADMIN"
    return "USER"


def answer(read_user: ReadUser, request: Request) -> Response:
    uid, role = read_user(request)
    if uid is None:
        return PlainTextResponse("not signed in", status_code=401)
    return PlainTextResponse(f"{uid} {role}")


def routes(read_user: ReadUser, login: Login | None) -> list[Route]:
    async def whoami(request: Request) -> Response:
        return answer(read_user, request)

    out = [Route("/", whoami)]
    if login is not None:
        async def login_route(request: Request) -> Response:
            login(request, request.path_params["uid"], request.query_params.get("role", "USER"))
            return PlainTextResponse("ok")

        out.append(Route("/login/{uid}", login_route))
    return out


def make_app(name: str, setup: Setup, read_user: ReadUser, login: Login | None = None,
             bare: bool = False) -> BenchApp:
    """A Starlette app with the strategy's middleware; ``bare``: the middleware around a
    plain ASGI endpoint instead (no routing, no login route), for tight loops. A setup
    that built its own app (``Setup.app``) is used as it is."""
    if setup.app is not None:
        return BenchApp(name, setup.app, setup.connect, setup.disconnect)
    if bare:
        async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            await answer(read_user, Request(scope, receive))(scope, receive, send)

        app: ASGIApp = endpoint
        for cls, args, kwargs in reversed(setup.middleware):
            app = cls(app, *args, **kwargs)
        return BenchApp(name, app, setup.connect, setup.disconnect)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await setup.connect()
        try:
            yield
        finally:
            await setup.disconnect()

    starlette = Starlette(routes=routes(read_user, login), middleware=setup.middleware,
                          lifespan=lifespan)
    return BenchApp(name, starlette, setup.connect, setup.disconnect)


async def mint_cookies(bench_app: BenchApp, users: Sequence[tuple[str, str]]) -> list[str]:
    """Sign each ``(user_id, role)`` in through the app's ``/login/{uid}`` route; the
    Cookie header a browser would send back for each."""
    cookies = []
    for uid, role in users:
        status, headers, _ = await call(bench_app.app, make_scope(f"/login/{uid}?role={role}"))
        cookie = "; ".join(set_cookies(headers))
        if not 200 <= status < 300 or not cookie:
            raise RuntimeError(f"{bench_app.name}: login of {uid} gave {status}, no cookie")
        cookies.append(cookie)
    return cookies


def temp_sqlite_path() -> str:
    fd, path = tempfile.mkstemp(prefix="ajs-bench-", suffix=".sqlite3")
    os.close(fd)
    os.unlink(path)
    return path
