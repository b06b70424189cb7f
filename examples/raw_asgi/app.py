"""A plain ASGI app, no framework: the middleware puts the session in
``scope["session"]``; ``auth(scope)``, ``login(scope, ...)``, ``logout(scope)`` and
``require_role(scope, ...)`` take the scope.

Run it from this folder: ``uvicorn app:app``; ``SESSION_SECRET`` comes from the environment.

- ``POST /login`` with a JSON body ``{"username", "password"}``: signs in.
- ``GET /me``: who is signed in (``null`` when nobody is).
- ``GET /admin``: ADMIN only (401 / 403 JSON, answered by the middleware).
- ``POST /logout``: signs out.

CSRF: the POSTs accept only ``Content-Type: application/json``, which another site's
form cannot send, and a cross-site ``fetch`` with it needs a CORS preflight this app
never allows. (An app with HTML forms uses :mod:`asgi_jwt_session.csrf` instead.)
"""

import hmac
import json
import logging
import os
import secrets
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, Role, auth, login, logout, require_role

logger = logging.getLogger("uvicorn.error")

ACCOUNTS = {"ada": (Role.ADMIN, "ada-password"), "bob": (Role.USER, "bob-password")}
MAX_BODY = 4096


async def send_json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def read_json(scope: Scope, receive: Receive) -> Any:
    """The JSON body, or ``None`` when it is not JSON (or too large)."""
    headers = dict(scope["headers"])
    if headers.get(b"content-type", b"").split(b";")[0].strip() != b"application/json":
        return None
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > MAX_BODY:
            return None
        if not message.get("more_body", False):
            break
    try:
        return json.loads(body)
    except ValueError:
        return None


async def lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":  # websockets: refused (closed before accept)
        return
    route = (scope["method"], scope["path"])
    if route == ("GET", "/me"):
        session = auth(scope)
        user = None if session is None else {"id": session.user.id, "role": session.user.role,
                                             "expires": session.expires.isoformat()}
        await send_json(send, 200, {"user": user})
    elif route == ("GET", "/admin"):
        admin = require_role(scope, Role.ADMIN)  # raises; the middleware answers 401/403
        await send_json(send, 200, {"admin": admin.id})
    elif route == ("POST", "/login"):
        body = await read_json(scope, receive)
        if not isinstance(body, dict):
            await send_json(send, 415, {"detail": "Send a JSON object"})
            return
        account = ACCOUNTS.get(str(body.get("username")))
        password = str(body.get("password", "")).encode()
        if account is None or not hmac.compare_digest(account[1].encode(), password):
            await send_json(send, 401, {"detail": "Wrong username or password"})
            return
        session = login(scope, str(body["username"]), account[0])
        await send_json(send, 200, {"user": {"id": session.user.id, "role": session.user.role}})
    elif route == ("POST", "/logout"):
        if await read_json(scope, receive) is None:
            await send_json(send, 415, {"detail": "Send a JSON body"})
            return
        logout(scope)
        await send_json(send, 200, {"user": None})
    else:
        await send_json(send, 404, {"detail": "Not found"})


def create_app(secret_key: str | None = None) -> ASGIApp:
    """``endpoint`` under the middleware; ``secret_key`` defaults to ``SESSION_SECRET``."""
    if secret_key is None:
        secret_key = os.environ.get("SESSION_SECRET")
    if not secret_key:
        logger.warning("SESSION_SECRET is not set: using a random one (asgi-jwt-session keygen)")
        secret_key = secrets.token_urlsafe(32)
    return JWTSessionMiddleware(endpoint, secret_key=secret_key)


app = create_app()
