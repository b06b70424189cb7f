"""The framework contract's app on Litestar (see tests/test_frameworks_apps.py)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, WebSocket, get, post, websocket
from litestar.di import NamedDependency, Provide

from asgi_jwt_session import SessionUser, auth, login
from asgi_jwt_session.integrations.litestar import (
    JWTSessionPlugin,
    requires_login,
    requires_role,
    session_user,
)
from tests.framework_apps import SECRET

COOKIE = "session"
CSRF_COOKIE = "csrftoken"


@get("/login", sync_to_thread=False)
def sign_in(request: Request[Any, Any, Any]) -> dict[str, Any]:
    user = request.query_params["user"]
    login(request, user, request.query_params.get("role", "USER"))
    return {"user": user}


@get("/me", sync_to_thread=False)
def me(request: Request[Any, Any, Any]) -> dict[str, Any]:
    session = auth(request)
    return {"user": session.user.id if session else None, "data": dict(request.session)}


@get("/member", guards=[requires_login], sync_to_thread=False)
def member(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"user": request.session.user.id}


@get("/whoami", dependencies={"user": Provide(session_user, sync_to_thread=False)},
     sync_to_thread=False)
def whoami(user: NamedDependency[SessionUser]) -> dict[str, Any]:
    return {"user": user.id, "role": user.role}


@get("/admin", guards=[requires_role("ADMIN")], sync_to_thread=False)
def admin(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return {"admin": request.session.user.id}


@post("/big")
async def big(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.session["blob"] = (await request.json())["blob"]
    return {"size": len(request.session["blob"])}


@post("/framework-signout", sync_to_thread=False)
def framework_signout(request: Request[Any, Any, Any]) -> dict[str, Any]:
    request.clear_session()  # Litestar's own session API
    return {"session": None}


@websocket("/ws")
async def ws(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    session = auth(socket)
    await socket.send_json({"user": session.user.id if session else None})
    await socket.close()


@websocket("/ws-admin", guards=[requires_role("ADMIN")])
async def ws_admin(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.send_json({"admin": True})
    await socket.close()


app = Litestar([sign_in, me, member, whoami, admin, big, framework_signout, ws, ws_admin],
               plugins=[JWTSessionPlugin(secret_key=SECRET)])
