"""The app the multi-process session-registry test runs twice: ``python -m uvicorn
tests.registry_app:app``, both processes on one PostgreSQL database, set up as
docs/session-management.md says.

Environment: ``REGISTRY_DSN`` (PostgreSQL), ``REGISTRY_TABLE`` (the users table; the
registry's is ``<table>_sessions``), ``REGISTRY_SECRET``. The admin endpoint is open:
this app only ever listens on loopback, in tests.
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

from asgi_jwt_session import JWTSessionMiddleware, auth, login
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness, PostgresVersionFeed
from asgi_jwt_session.impersonation import impersonate, stop_impersonating
from asgi_jwt_session.registry import (
    SessionRegistry,
    coarse_device,
    revoke_other_sessions,
    revoke_session,
)
from asgi_jwt_session.store import RoleStore

table = os.environ["REGISTRY_TABLE"]
store = RoleStore(os.environ["REGISTRY_DSN"], table=table, sessions_table=f"{table}_sessions")
feed = PostgresVersionFeed(store, min_backoff=0.05, max_backoff=1.0)
registry = SessionRegistry(store, device=coarse_device)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with store, feed:
        yield


async def sign_in(request: Request) -> JSONResponse:
    user = await store.get_user(request.query_params["user"])
    if user is None:
        return JSONResponse({"detail": "no such user"}, status_code=404)
    login(request, user.id, user.role, version=user.session_version)
    return JSONResponse({"jti": request.session.jti})


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse({"detail": "Not authenticated"}, status_code=401)
    return JSONResponse({"id": session.user.id, "jti": session.jti})


async def revoke(request: Request) -> JSONResponse:
    found = await revoke_session(store, request.query_params["id"])
    return JSONResponse({"found": found})


async def change_password(request: Request) -> JSONResponse:
    await revoke_other_sessions(request)
    return JSONResponse({"ok": True})


async def view_as(request: Request) -> JSONResponse:
    await impersonate(request, store, request.query_params["user"])
    return JSONResponse({"jti": request.session.jti})


async def stop_view_as(request: Request) -> JSONResponse:
    await stop_impersonating(request)
    return JSONResponse({"jti": request.session.jti})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse({"queries": store.queries, "listening": feed.connected.is_set(),
                         "recorded": registry.recorded, "pid": os.getpid()})


app = Starlette(
    routes=[
        Route("/login", sign_in, methods=["POST"]),
        Route("/me", me),
        Route("/revoke-session", revoke, methods=["POST"]),
        Route("/change-password", change_password, methods=["POST"]),
        Route("/stats", stats),
        Route("/view-as", view_as, methods=["POST"]),
        Route("/stop-view-as", stop_view_as, methods=["POST"]),
        session_routes(),
    ],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=os.environ["REGISTRY_SECRET"],
                           freshness=Freshness(store, feed=feed, registry=registry))],
    lifespan=lifespan,
)
