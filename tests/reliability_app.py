"""The app the start-up-while-down test runs: ``python -m uvicorn tests.reliability_app:app``,
set up exactly as docs/freshness.md says (``async with store, feed:`` in the lifespan,
``exception_handlers`` for the 503).

Environment: ``RELIABILITY_DSN`` (PostgreSQL), ``RELIABILITY_TABLE``,
``RELIABILITY_SECRET``. The admin endpoint is open: this app only ever listens on
loopback, in tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, Role, auth, login, require_role
from asgi_jwt_session.freshness import Freshness, PostgresVersionFeed
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.store import RoleStore, update_user_role

store = RoleStore(os.environ["RELIABILITY_DSN"], table=os.environ["RELIABILITY_TABLE"])
feed = PostgresVersionFeed(store)
freshness = Freshness(store, feed=feed)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with store, feed:
        yield


async def sign_in(request: Request) -> JSONResponse:
    user = await store.get_user(request.query_params["user"])  # 503 while the store is down
    if user is None:
        return JSONResponse({"detail": "no such user"}, status_code=404)
    login(request, user.id, user.role, version=user.session_version)
    return JSONResponse({"role": user.role})


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)
    return JSONResponse({"id": session.user.id, "role": session.user.role})


async def admin(request: Request) -> JSONResponse:
    user = require_role(request, Role.ADMIN)
    return JSONResponse({"id": user.id})


async def set_role(request: Request) -> JSONResponse:
    user = await update_user_role(store, request.query_params["user"],
                                  request.query_params["role"])
    return JSONResponse({"version": user.session_version})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"store": store.is_connected, "feed": feed.connected.is_set(),
                         "reachable": freshness.reachable})


app = Starlette(
    routes=[
        Route("/login", sign_in, methods=["POST"]),
        Route("/me", me),
        Route("/admin", admin),
        Route("/set-role", set_role, methods=["POST"]),
        Route("/stats", stats),
    ],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=os.environ["RELIABILITY_SECRET"],
                           freshness=freshness)],
    exception_handlers=exception_handlers,
    lifespan=lifespan,
)
