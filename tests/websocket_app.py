"""A guarded websocket app for tests/test_websocket_servers.py, served by a real server.

``/ws/...`` runs inside a Starlette app that installs the middleware with
``Middleware(...)``; ``/outside/ws/...`` inside an app the middleware wraps from outside
(its ``exception_handlers`` answer the guards' errors)."""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from asgi_jwt_session import (
    JWTSessionMiddleware,
    Role,
    auth,
    login,
    requires_login,
    requires_role,
)
from asgi_jwt_session.responses import exception_handlers

SECRET = secrets.token_hex(32)  # the process signs in and checks its own cookies


async def sign_in(request: Request) -> JSONResponse:
    login(request, user_id=request.query_params["user"], role=request.query_params["role"])
    return JSONResponse({"user": request.query_params["user"]})


@requires_role(Role.ADMIN)
async def admin_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    session = auth(websocket)
    await websocket.send_json({"hello": session.user.id if session else None})
    await websocket.close(1000)


@requires_login
async def member_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("welcome")
    await websocket.close(1000)


ROUTES = [Route("/login", sign_in), WebSocketRoute("/ws/admin", admin_socket),
          WebSocketRoute("/ws/member", member_socket)]

inside = Starlette(routes=ROUTES, middleware=[Middleware(JWTSessionMiddleware,
                                                         secret_key=SECRET)])
outside = JWTSessionMiddleware(
    Starlette(routes=[Route("/outside/login", sign_in),
                      WebSocketRoute("/outside/ws/admin", admin_socket),
                      WebSocketRoute("/outside/ws/member", member_socket)],
              exception_handlers=exception_handlers),
    secret_key=SECRET)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    target = outside if scope.get("path", "").startswith("/outside/") else inside
    await target(scope, receive, send)
