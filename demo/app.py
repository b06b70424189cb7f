"""The demo: sign-in, roles, role changes and session refresh, on the public API only.

``create_app()`` builds it; ``python -m demo`` serves it (see ``demo/__main__.py``).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.websockets import WebSocket

from asgi_jwt_session import (
    AuthError,
    JWTSessionMiddleware,
    PermissionDenied,
    Role,
    UnknownRole,
    UnknownUser,
    auth,
    login,
    require_admin,
    require_role,
    requires_login,
    requires_role,
    update_user_role,
)
from asgi_jwt_session.csrf import csrf_token, set_csrf_cookie, verify_csrf
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.responses import safe_next
from asgi_jwt_session.store import RoleStore
from demo.accounts import DEMO_ACCOUNTS, Accounts

HERE = Path(__file__).resolve().parent
SECRET_FILE = HERE / ".secret"
DEFAULT_DATABASE_URL = f"sqlite:///{HERE / 'demo.sqlite3'}"

# What each page needs, for the forbidden page to say so.
PAGE_ROLES = {"/org": Role.ORG_ADMIN, "/admin": Role.ADMIN}

logger = logging.getLogger("uvicorn.error")  # printed with uvicorn's own lines
templates = Jinja2Templates(directory=HERE / "templates")


def database_url() -> str:
    """``DATABASE_URL`` (``postgresql://...``), else a SQLite file in ``demo/``."""
    return os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL


def secret_key(path: Path = SECRET_FILE) -> str:
    """``SESSION_SECRET``, else a secret made once and kept in ``demo/.secret``."""
    from_env = os.environ.get("SESSION_SECRET")
    if from_env:
        return from_env
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret


# --- helpers ---------------------------------------------------------------------------


def store_of(conn: HTTPConnection) -> RoleStore:
    store: RoleStore = conn.app.state.store
    return store


def accounts_of(conn: HTTPConnection) -> Accounts:
    accounts: Accounts = conn.app.state.accounts
    return accounts


def when(timestamp: int | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render(request: Request, name: str, context: dict[str, Any] | None = None,
           status_code: int = 200) -> Response:
    """A page: the template gets the session, the CSRF token and a flash message."""
    session = auth(request)
    flash = request.session.pop("flash", None) if session is not None else None
    page = {
        "session": session,
        "user": session.user if session is not None else None,
        "csrf_token": csrf_token(request),
        "flash": flash,
        "when": when,
        **(context or {}),
    }
    response = templates.TemplateResponse(request, name, page, status_code=status_code)
    set_csrf_cookie(request, response)
    response.headers["cache-control"] = "no-store"  # every page depends on the session
    return response


# --- pages -----------------------------------------------------------------------------


async def home(request: Request) -> Response:
    target = "/dashboard" if auth(request) is not None else "/login"
    return RedirectResponse(target, status_code=303)


async def login_page(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"), "/dashboard")
    return render(request, "login.html", {"next": next_url, "accounts": DEMO_ACCOUNTS,
                                          "asked_for": request.query_params.get("next")})


async def login_submit(request: Request) -> Response:
    await verify_csrf(request)
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_url = safe_next(form.get("next"), "/dashboard")
    user = await accounts_of(request).authenticate(email, password)
    if user is None:
        context = {"next": next_url, "accounts": DEMO_ACCOUNTS, "email": email,
                   "error": "Wrong email or password."}
        return render(request, "login.html", context, status_code=400)
    login(request, user.id, user.role, version=user.session_version, email=user.email)
    return RedirectResponse(next_url, status_code=303)


@requires_login
async def dashboard(request: Request) -> Response:
    return render(request, "dashboard.html")


@requires_role(Role.ORG_ADMIN)
async def org_page(request: Request) -> Response:
    users = await store_of(request).list_users()
    return render(request, "org.html", {"users": users})


async def admin_page(request: Request) -> Response:
    require_admin(request)
    users = await store_of(request).list_users()
    return render(request, "admin.html", {"users": users, "roles": list(Role)})


async def change_role(request: Request) -> Response:
    me = require_admin(request)
    await verify_csrf(request)
    form = await request.form()
    user_id = request.path_params["user_id"]
    try:
        user = await update_user_role(store_of(request), user_id, str(form.get("role", "")))
    except (UnknownUser, UnknownRole) as exc:
        request.session["flash"] = f"Not changed: {exc}"
        return RedirectResponse("/admin", status_code=303)
    session = auth(request)
    if session is not None and user.id == me.id:  # your own role: seen at once
        session.set_role(user.role, version=user.session_version)
    request.session["flash"] = f"{user.id} is now {user.role}: they see it on their next request."
    return RedirectResponse("/admin", status_code=303)


# --- JSON API and websocket --------------------------------------------------------------


@requires_login
async def api_me(request: Request) -> JSONResponse:
    session = auth(request)
    assert session is not None and session.user is not None
    user = session.user
    return JSONResponse({"id": user.id, "role": user.role, "email": user.get("email"),
                         "expires": when(session.expires_at)})


async def api_admin_users(request: Request) -> JSONResponse:
    require_admin(request)
    users = await store_of(request).list_users()
    return JSONResponse({"users": [{"id": u.id, "email": u.email, "role": u.role,
                                    "sessionVersion": u.session_version} for u in users]})


async def org_socket(websocket: WebSocket) -> None:
    """Org admins and admins only. The guard runs after ``accept()``, so that a browser
    sees the close code (4401 / 4403): a close before accept, as ``@requires_role``
    does, reaches a browser only as a failed handshake (code 1006)."""
    await websocket.accept()
    try:
        user = require_role(websocket, Role.ORG_ADMIN)
    except AuthError as exc:
        await websocket.close(exc.close_code, exc.detail)
        return
    await websocket.send_json({"hello": user.id, "role": user.role})
    await websocket.close(1000, "bye")


# --- errors ----------------------------------------------------------------------------


async def forbidden(conn: HTTPConnection, exc: Exception) -> Response:
    """403 pages that say why. JSON clients and websockets get the package's answer:
    re-raised, the middleware answers it (403 JSON, websocket close 4403)."""
    if not (isinstance(conn, Request) and "text/html" in conn.headers.get("accept", "")):
        raise exc
    context = {"detail": str(exc), "needs": PAGE_ROLES.get(conn.url.path),
               "path": conn.url.path}
    return render(conn, "forbidden.html", context, status_code=403)


# --- the app ---------------------------------------------------------------------------


def create_app(database: str | None = None, secret: str | None = None) -> Starlette:
    """The demo app on ``database`` (a URL; default ``database_url()``) with ``secret``
    (default ``secret_key()``). Tables are created and seeded at start-up."""
    store = RoleStore(database or database_url())
    accounts = Accounts(store)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with store:  # connect; disconnect on shutdown
            await store.create_tables()
            await accounts.create_tables()
            if await accounts.seed():
                logger.info("seeded %d demo accounts", len(DEMO_ACCOUNTS))
            yield

    # Freshness: with the store, a role change made here reaches the user's session on
    # their next request, and any other change within `revalidate_after` seconds.
    middleware = [
        Middleware(JWTSessionMiddleware, secret_key=secret or secret_key(),
                   freshness=Freshness(store, revalidate_after=60)),
    ]
    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/dashboard", dashboard),
        Route("/org", org_page),
        Route("/admin", admin_page),
        Route("/admin/users/{user_id}/role", change_role, methods=["POST"]),
        Route("/api/me", api_me),
        Route("/api/admin/users", api_admin_users),
        WebSocketRoute("/ws/org", org_socket),
        session_routes(),  # refreshes through the middleware's freshness (its store)
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan,
                    exception_handlers={PermissionDenied: forbidden})
    app.state.store = store
    app.state.accounts = accounts
    return app
