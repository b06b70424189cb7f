"""The trio set-up docs/architecture.md describes, served by hypercorn's trio worker in
tests/test_trio.py: the middleware, guards, session endpoints and a Freshness whose
user loader is plain trio-friendly code, with the in-process VersionFeed."""

from __future__ import annotations

import secrets

import anyio
import sniffio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, Role, login, require_role
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness, VersionFeed

USERS = {"ann": ("ADMIN", 1), "bob": ("USER", 1)}  # the app's own user table
loads = 0


async def load_user(user_id: str) -> tuple[str, int] | None:
    """The user as the database has it now (a trio-capable driver's query here)."""
    global loads
    loads += 1
    await anyio.sleep(0)
    return USERS.get(user_id)


feed = VersionFeed()
freshness = Freshness(load_user, feed=feed, revalidate_after=300)


async def library(request: Request) -> JSONResponse:
    return JSONResponse({"library": sniffio.current_async_library(), "loads": loads})


async def sign_in(request: Request) -> JSONResponse:
    user_id = request.query_params["user"]
    role, version = USERS[user_id]
    login(request, user_id=user_id, role=role, version=version)
    return JSONResponse({"user": user_id})


async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"admin": require_role(request, Role.ADMIN).id})


async def demote(request: Request) -> JSONResponse:
    """The app changes a role: its table, then the feed, so sessions see it."""
    user_id = request.query_params["user"]
    _, version = USERS[user_id]
    USERS[user_id] = ("USER", version + 1)
    feed.publish(user_id, version + 1)
    return JSONResponse({"user": user_id})


app = Starlette(
    routes=[Route("/library", library), Route("/login", sign_in), Route("/admin", admin),
            Route("/demote", demote, methods=["POST"]), session_routes()],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=secrets.token_hex(32),
                           freshness=freshness)],
)
