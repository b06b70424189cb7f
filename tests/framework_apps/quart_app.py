"""The framework contract's app on Quart (see tests/test_frameworks_apps.py)."""

from __future__ import annotations

from typing import Any

from quart import Quart, request, session, websocket

from asgi_jwt_session import auth, login, logout
from asgi_jwt_session.integrations.quart import current_session, install, requires_role
from tests.framework_apps import SECRET

COOKIE = "jwt_session"
OWN_SESSION_COOKIE = "session"  # Quart's own
CSRF_COOKIE = "csrftoken"

app = Quart(__name__)
app.secret_key = "quart's-own-secret-for-its-own-session"
install(app, secret_key=SECRET)


@app.get("/login")
async def sign_in() -> dict[str, Any]:
    login(request, request.args["user"], request.args.get("role", "USER"))
    return {"user": request.args["user"]}


@app.get("/me")
async def me() -> dict[str, Any]:
    found = auth(request)
    return {"user": found.user.id if found else None, "data": dict(current_session())}


@app.get("/member")
@requires_role()
async def member() -> dict[str, Any]:
    return {"user": current_session().user.id}  # type: ignore[union-attr]


@app.get("/admin")
@requires_role("ADMIN")
async def admin() -> dict[str, Any]:
    return {"admin": current_session().user.id}  # type: ignore[union-attr]


@app.post("/big")
async def big() -> dict[str, Any]:
    blob = (await request.get_json())["blob"]
    current_session()["blob"] = blob
    return {"size": len(blob)}


@app.post("/framework-signout")
async def framework_signout() -> dict[str, Any]:
    session["theme"] = "dark"  # Quart's own session cookie, written beside ours
    logout(request)
    return {"session": None}


@app.websocket("/ws")
async def ws() -> None:
    await websocket.accept()
    found = auth(websocket)
    await websocket.send_json({"user": found.user.id if found else None})


@app.websocket("/ws-admin")
@requires_role("ADMIN")
async def ws_admin() -> None:
    await websocket.accept()
    await websocket.send_json({"admin": True})
