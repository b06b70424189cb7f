"""The app the multi-process freshness test runs twice: ``python -m uvicorn
tests.freshness_app:app``, both processes on one PostgreSQL database.

Environment: ``FRESHNESS_DSN`` (PostgreSQL), ``FRESHNESS_TABLE``, ``FRESHNESS_SECRET``.
The admin endpoints are open: this app only ever listens on loopback, in tests.
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
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role

store = RoleStore(os.environ["FRESHNESS_DSN"], table=os.environ["FRESHNESS_TABLE"])
feed = PostgresVersionFeed(store, min_backoff=0.05, max_backoff=1.0)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with store, feed:
        yield


async def sign_in(request: Request) -> JSONResponse:
    user = await store.get_user(request.query_params["user"])
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
    return JSONResponse({"id": user.id, "role": user.role})


async def set_role(request: Request) -> JSONResponse:
    user = await update_user_role(store, request.query_params["user"],
                                  request.query_params["role"])
    return JSONResponse({"version": user.session_version})


async def revoke(request: Request) -> JSONResponse:
    user = await revoke_sessions(store, request.query_params["user"])
    return JSONResponse({"version": user.session_version})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"queries": store.queries, "listening": feed.connected.is_set(),
                         "pid": os.getpid()})


app = Starlette(
    routes=[
        Route("/login", sign_in, methods=["POST"]),
        Route("/me", me),
        Route("/admin", admin),
        Route("/set-role", set_role, methods=["POST"]),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/stats", stats),
    ],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=os.environ["FRESHNESS_SECRET"],
                           freshness=Freshness(store, feed=feed))],
    lifespan=lifespan,
)
