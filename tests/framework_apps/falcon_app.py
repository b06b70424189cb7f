"""The framework contract's app on Falcon (see tests/test_frameworks_apps.py)."""

from __future__ import annotations

from typing import Any

import falcon
import falcon.asgi

from asgi_jwt_session import auth, login, logout
from asgi_jwt_session.integrations.falcon import (
    asgi_application,
    require,
    requires_login,
    requires_role,
    session,
)
from tests.framework_apps import SECRET

COOKIE = "session"
CSRF_COOKIE = "csrftoken"

Req = falcon.asgi.Request
Resp = falcon.asgi.Response


class SignIn:
    async def on_get(self, req: Req, resp: Resp) -> None:
        login(req, req.get_param("user", required=True), req.get_param("role") or "USER")
        resp.media = {"user": req.get_param("user")}


class Me:
    async def on_get(self, req: Req, resp: Resp) -> None:
        found = auth(req)
        resp.media = {"user": found.user.id if found else None, "data": dict(session(req))}


class Member:
    @falcon.before(requires_login)
    async def on_get(self, req: Req, resp: Resp) -> None:
        resp.media = {"user": session(req).user.id}  # type: ignore[union-attr]


class Admin:
    @falcon.before(requires_role("ADMIN"))
    async def on_get(self, req: Req, resp: Resp) -> None:
        resp.media = {"admin": session(req).user.id}  # type: ignore[union-attr]


class Big:
    async def on_post(self, req: Req, resp: Resp) -> None:
        blob = (await req.get_media())["blob"]
        session(req)["blob"] = blob
        resp.media = {"size": len(blob)}


class FrameworkSignout:
    async def on_post(self, req: Req, resp: Resp) -> None:
        logout(req)
        resp.media = {"session": None}


class Socket:
    async def on_websocket(self, req: Req, ws: falcon.asgi.WebSocket) -> None:
        await ws.accept()
        found = auth(req)
        await ws.send_media({"user": found.user.id if found else None})
        await ws.close()


class AdminSocket:
    async def on_websocket(self, req: Req, ws: falcon.asgi.WebSocket) -> None:
        require(req, "ADMIN")  # refused before accept: the error handler closes it
        await ws.accept()
        await ws.send_media({"admin": True})
        await ws.close()


falcon_app: falcon.asgi.App[Any, Any] = falcon.asgi.App()
for route, resource in [("/login", SignIn()), ("/me", Me()), ("/member", Member()),
                        ("/admin", Admin()), ("/big", Big()),
                        ("/framework-signout", FrameworkSignout()), ("/ws", Socket()),
                        ("/ws-admin", AdminSocket())]:
    falcon_app.add_route(route, resource)
app = asgi_application(falcon_app, secret_key=SECRET)
