"""The app the DBSC browser tests serve over TLS: ``python -m uvicorn tests.dbsc_app:app
--ssl-certfile ... --ssl-keyfile ...``, set up as docs/device-binding.md says.

Environment: ``DBSC_DATABASE`` (a SQLite URL), ``DBSC_SECRET``, ``DBSC_BOUND_LIFETIME``
and ``DBSC_LEEWAY`` (seconds). It records every request it receives (``GET /events``), so
a test can see what the browser sent and when: the refreshes too, which the middleware
answers itself.
The admin endpoints are open: this app only ever listens on loopback, in tests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, auth, login
from asgi_jwt_session.dbsc import DeviceBinding
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.registry import SessionRegistry, list_sessions, revoke_session
from asgi_jwt_session.store import RoleStore

logging.basicConfig(level=logging.INFO)  # the DBSC refusals say why
store = RoleStore(os.environ["DBSC_DATABASE"], sessions_table="user_sessions")
registry = SessionRegistry(store)
binding = DeviceBinding(bound_lifetime=int(os.environ.get("DBSC_BOUND_LIFETIME", "600")))
events: list[dict[str, Any]] = []


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with store:
        await store.create_tables()
        if await store.get_user("alice") is None:
            await store.create_user("alice", "USER", email="alice@example.com")
        yield


async def sign_in(request: Request) -> HTMLResponse:
    login(request, "alice", "USER")
    return HTMLResponse("<h1>signed in</h1>")


async def page(request: Request) -> HTMLResponse:
    session = auth(request)
    who = session.user.id if session is not None else "nobody"
    return HTMLResponse(f"<h1 id=who>{who}</h1>")


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None:
        return JSONResponse({"user": None}, status_code=401)
    return JSONResponse({"user": session.user.id, "jti": session.jti,
                         "expires_at": session.expires_at, "bound": session.cnf is not None})


async def sessions(request: Request) -> JSONResponse:
    rows = await list_sessions(store, "alice")
    return JSONResponse([{"id": row.id, "device_bound": row.device_bound} for row in rows])


async def revoke(request: Request) -> JSONResponse:
    return JSONResponse({"found": await revoke_session(store, request.query_params["id"])})


async def get_events(request: Request) -> JSONResponse:
    return JSONResponse(events)


class Recorder:
    """Outside the session middleware: records each request and its status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/events":
            await self.app(scope, receive, send)
            return
        headers = {key.decode(): value.decode("latin-1") for key, value in scope["headers"]}
        pairs = [pair.strip().split("=", 1) for pair in headers.get("cookie", "").split(";")
                 if "=" in pair]
        cookies = [name for name, _ in pairs]
        event: dict[str, Any] = {
            "at": time.time(), "method": scope["method"], "path": scope["path"],
            "cookies": cookies, "session_id": headers.get("sec-secure-session-id"),
            # Which browser context: its "who" cookie (DBSC's own requests carry the
            # cookies, not the context's user agent).
            "agent": dict(pairs).get("who"),
            "proof": headers.get("secure-session-response")}
        events.append(event)

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                event["status"] = message["status"]
                event["set_cookie"] = [value.decode("latin-1") for key, value
                                       in message.get("headers", ()) if key == b"set-cookie"]
            await send(message)

        await self.app(scope, receive, record)


app = Starlette(
    routes=[
        Route("/login", sign_in),
        Route("/page", page),
        Route("/me", me),
        Route("/sessions", sessions),
        Route("/revoke", revoke, methods=["POST"]),
        Route("/events", get_events),
    ],
    middleware=[
        Middleware(Recorder),
        Middleware(JWTSessionMiddleware, secret_key=os.environ["DBSC_SECRET"],
                   max_cookie_size=3800, device_binding=binding,
                   leeway=int(os.environ.get("DBSC_LEEWAY", "10")),
                   freshness=Freshness(store, registry=registry)),
    ],
    lifespan=lifespan,
)
