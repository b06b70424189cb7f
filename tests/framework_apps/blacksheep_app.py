"""The framework contract's app on BlackSheep (see tests/test_frameworks_apps.py)."""

from __future__ import annotations

from blacksheep import Application, Request, Response, Router, WebSocket, json

from asgi_jwt_session import auth, login, logout
from asgi_jwt_session.integrations.blacksheep import (
    asgi_application,
    requires_login,
    requires_role,
    session,
)
from tests.framework_apps import SECRET

COOKIE = "session"
CSRF_COOKIE = "csrftoken"

# A router of its own: BlackSheep's default one is shared by every Application() of
# the process (a docs page's app in the same test run, say), and refused the second time.
blacksheep_app = Application(router=Router())
get, post, ws = blacksheep_app.router.get, blacksheep_app.router.post, blacksheep_app.router.ws


@get("/login")
async def sign_in(request: Request) -> Response:
    user = request.query["user"][0]
    login(request, user, request.query.get("role", ["USER"])[0])
    return json({"user": user})


@get("/me")
async def me(request: Request) -> Response:
    found = auth(request)
    return json({"user": found.user.id if found else None, "data": dict(session(request))})


@get("/member")
@requires_login
async def member(request: Request) -> Response:
    return json({"user": session(request).user.id})  # type: ignore[union-attr]


@get("/admin")
@requires_role("ADMIN")
async def admin(request: Request) -> Response:
    return json({"admin": session(request).user.id})  # type: ignore[union-attr]


@post("/big")
async def big(request: Request) -> Response:
    blob = (await request.json())["blob"]
    session(request)["blob"] = blob
    return json({"size": len(blob)})


@post("/framework-signout")
async def framework_signout(request: Request) -> Response:
    logout(request)
    return json({"session": None})


@ws("/ws")
async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    found = auth(websocket)
    await websocket.send_json({"user": found.user.id if found else None})
    await websocket.close()


@ws("/ws-admin")
@requires_role("ADMIN")
async def admin_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"admin": True})
    await websocket.close()


app = asgi_application(blacksheep_app, secret_key=SECRET)
