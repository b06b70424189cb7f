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
    logout,
    reauthenticate,
    require_admin,
    require_role,
    requires_login,
    requires_role,
    update_user_role,
)
from asgi_jwt_session.csrf import csrf_token, set_csrf_cookie, verify_csrf
from asgi_jwt_session.dbsc import DeviceBinding
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.guards import require_fresh_login
from asgi_jwt_session.impersonation import (
    ImpersonationError,
    ImpersonationEvent,
    impersonate,
    stop_impersonating,
)
from asgi_jwt_session.registry import (
    SessionRegistry,
    coarse_device,
    list_sessions,
    revoke_other_sessions,
    revoke_session,
)
from asgi_jwt_session.responses import safe_next
from asgi_jwt_session.store import RoleStore
from demo.accounts import DEMO_ACCOUNTS, Accounts

HERE = Path(__file__).resolve().parent
SECRET_FILE = HERE / ".secret"
DEFAULT_DATABASE_URL = f"sqlite:///{HERE / 'demo.sqlite3'}"
SESSIONS_TABLE = "user_sessions"  # the session registry's table, beside ``users``
FRESH_LOGIN_AGE = 300  # seconds: how recent a sign-in the password change asks for
MIN_PASSWORD = 8
DEMO_PASSWORDS = {account.email: account.password for account in DEMO_ACCOUNTS}

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
    """A page: the template gets the session, the CSRF token and a message left by the
    previous request: ``flash`` (done) or ``refusal`` (not done, and why)."""
    session = auth(request)
    flash = request.session.pop("flash", None) if session is not None else None
    refusal = request.session.pop("refusal", None) if session is not None else None
    page = {
        "session": session,
        "user": session.user if session is not None else None,
        "csrf_token": csrf_token(request),
        "flash": flash,
        "refusal": refusal,
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


async def login_context(request: Request) -> dict[str, Any]:
    """The sign-in page's accounts: the database's users and roles, with the seeded
    demo password of each seeded email, unless it was changed since (then unknown)."""
    users = await store_of(request).list_users()
    changed = await accounts_of(request).changed_passwords()
    accounts = [{"email": user.email, "role": user.role,
                 "password": None if user.id in changed else DEMO_PASSWORDS.get(user.email or "")}
                for user in users if user.email and not user.disabled]
    return {"accounts": accounts}


async def login_page(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"), "/dashboard")
    session = auth(request)
    reauth = request.query_params.get("reauth") == "1" and session is not None
    context = {"next": next_url, "asked_for": request.query_params.get("next"),
               "reauth": reauth,
               "signed_out": "signed_out" in request.query_params and session is None,
               **await login_context(request)}
    return render(request, "login.html", context)


async def login_submit(request: Request) -> Response:
    await verify_csrf(request)
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_url = safe_next(form.get("next"), "/dashboard")
    user = await accounts_of(request).authenticate(email, password)
    if user is None:
        context = {"next": next_url, "email": email, "error": "Wrong email or password.",
                   **await login_context(request)}
        return render(request, "login.html", context, status_code=400)
    login(request, user.id, user.role, version=user.session_version, email=user.email)
    return RedirectResponse(next_url, status_code=303)


async def confirm_submit(request: Request) -> Response:
    """The re-enter-password form (``/login?reauth=1``): the signed-in user proves their
    password again, and ``reauthenticate()`` makes the session fresh."""
    await verify_csrf(request)
    session = auth(request)
    if session is None or session.user is None:
        return RedirectResponse("/login", status_code=303)
    form = await request.form()
    next_url = safe_next(form.get("next"), "/dashboard")
    actor = session.user.actor or session.user  # impersonating: the admin's password
    email = str(actor.get("email") or "")
    if await accounts_of(request).authenticate(email, str(form.get("password", ""))) is None:
        context = {"next": next_url, "reauth": True, "error": "Wrong password.",
                   **await login_context(request)}
        return render(request, "login.html", context, status_code=400)
    reauthenticate(request)
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


async def leaves_no_admin(store: RoleStore, user_id: str, role: str) -> bool:
    """True when giving ``user_id`` the role ``role`` would leave no enabled admin."""
    users = await store.list_users()
    admins = [user.id for user in users if user.role == Role.ADMIN and not user.disabled]
    return role != Role.ADMIN and admins == [user_id]


async def change_role(request: Request) -> Response:
    me = require_admin(request)
    await verify_csrf(request)
    form = await request.form()
    user_id = request.path_params["user_id"]
    role = str(form.get("role", ""))
    store = store_of(request)
    if await leaves_no_admin(store, user_id, role):
        request.session["refusal"] = (f"Not changed: {user_id} is the last admin. Make "
                                      "someone else an admin first.")
        return RedirectResponse("/admin", status_code=303)
    try:
        user = await update_user_role(store, user_id, role)
    except (UnknownUser, UnknownRole) as exc:
        request.session["refusal"] = f"Not changed: {exc}"
        return RedirectResponse("/admin", status_code=303)
    session = auth(request)
    if session is not None and user.id == me.id:  # your own role: seen at once
        session.set_role(user.role, version=user.session_version)
    request.session["flash"] = f"{user.id} is now {user.role}: they see it on their next request."
    return RedirectResponse("/admin", status_code=303)


# --- session management: active sessions, fresh login, impersonation --------------------


async def sign_out(request: Request) -> Response:
    """Sign out here and end the session everywhere (OWASP ASVS 3.3.1): its registry row
    is revoked first, so a copy of this cookie stops working too; then ``logout()``."""
    await verify_csrf(request)
    session = auth(request)
    if session is not None:
        session_id = session.actor.jti if session.actor is not None else session.jti
        if session_id is not None:
            await revoke_session(store_of(request), session_id)
        logout(request)
    form = await request.form()
    return RedirectResponse(safe_next(form.get("next"), "/login?signed_out"), status_code=303)


def while_viewing_as(request: Request) -> Response | None:
    """A redirect with a message when an admin views the app as someone else: their
    sessions and password are theirs to manage, not the admin's."""
    session = auth(request)
    if session is None or session.actor is None:
        return None
    request.session["refusal"] = "Not while viewing as another user: go back first."
    return RedirectResponse("/dashboard", status_code=303)


@requires_login
async def sessions_page(request: Request) -> Response:
    """The user's signed-in sessions (the registry's rows), this one marked."""
    session = auth(request)
    assert session is not None and session.user is not None
    if (refused := while_viewing_as(request)) is not None:
        return refused
    # One page of 100 holds them all: the store keeps at most 50 a user.
    records = await list_sessions(store_of(request), session.user.id, limit=100)
    return render(request, "sessions.html", {"records": records, "current": session.jti})


@requires_login
async def sessions_revoke(request: Request) -> Response:
    """Sign one of your sessions out, wherever it is used; this one signs you out."""
    await verify_csrf(request)
    session = auth(request)
    assert session is not None and session.user is not None
    if (refused := while_viewing_as(request)) is not None:
        return refused
    session_id = request.path_params["session_id"]
    mine = {record.id for record in await list_sessions(store_of(request), session.user.id,
                                                        limit=100)}
    if session_id not in mine:  # unknown, or another user's: the same answer
        request.session["refusal"] = "No such session."
        return RedirectResponse("/sessions", status_code=303)
    await revoke_session(store_of(request), session_id)
    if session_id == session.jti:
        session.logout()
        return RedirectResponse("/login?signed_out", status_code=303)
    request.session["flash"] = ("That device is signed out: its next request lands on "
                                "the sign-in page.")
    return RedirectResponse("/sessions", status_code=303)


@requires_login
async def sessions_revoke_others(request: Request) -> Response:
    await verify_csrf(request)
    if (refused := while_viewing_as(request)) is not None:
        return refused
    await revoke_other_sessions(request)
    request.session["flash"] = "Every other device is signed out; you stay signed in here."
    return RedirectResponse("/sessions", status_code=303)


async def password_page(request: Request) -> Response:
    require_fresh_login(request, max_age=fresh_login_age(request))
    if (refused := while_viewing_as(request)) is not None:
        return refused
    return render(request, "password.html")


async def password_submit(request: Request) -> Response:
    """A sensitive action: behind a fresh login; then every other session ends."""
    user = require_fresh_login(request, max_age=fresh_login_age(request))
    await verify_csrf(request)
    if (refused := while_viewing_as(request)) is not None:
        return refused
    form = await request.form()
    password = str(form.get("password", ""))
    if len(password) < MIN_PASSWORD:
        context = {"error": f"At least {MIN_PASSWORD} characters."}
        return render(request, "password.html", context, status_code=400)
    await accounts_of(request).change_password(user.id, password)
    await revoke_other_sessions(request)  # a credential change: sign out elsewhere
    request.session["flash"] = "Password changed; every other device is signed out."
    return RedirectResponse("/sessions", status_code=303)


def fresh_login_age(request: Request) -> int:
    age: int = request.app.state.fresh_login_age
    return age


async def view_as(request: Request) -> Response:
    """Admin "view as this user": ``impersonate()``; a banner shows it on every page."""
    require_admin(request)
    await verify_csrf(request)
    user_id = request.path_params["user_id"]
    target = await store_of(request).get_user(user_id)
    claims: dict[str, Any] = {"email": target.email} if target is not None and target.email else {}
    try:
        await impersonate(request, store_of(request), user_id, on_event=audit, **claims)
    except ImpersonationError as exc:
        request.session["refusal"] = f"Not started: {exc.detail}"
        return RedirectResponse("/admin", status_code=303)
    return RedirectResponse("/dashboard", status_code=303)


async def stop_view_as(request: Request) -> Response:
    await verify_csrf(request)
    try:
        await stop_impersonating(request, on_event=audit)
    except ImpersonationError:
        return RedirectResponse("/dashboard", status_code=303)
    return RedirectResponse("/admin", status_code=303)


def audit(event: ImpersonationEvent) -> None:
    """Every start and stop of an impersonation: the app's audit log (here, the log)."""
    logger.info("audit: %s views as %s: %s", event.actor.id, event.user.id, event.action)


# --- JSON API and websocket --------------------------------------------------------------


@requires_login
async def api_me(request: Request) -> JSONResponse:
    session = auth(request)
    assert session is not None and session.user is not None
    user = session.user
    return JSONResponse({"id": user.id, "role": user.role, "email": user.get("email"),
                         "expires": when(session.expires_at), "version": session.version})


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


def create_app(database: str | None = None, secret: str | None = None, *,
               fresh_login_age: int | None = None, device_binding: bool = False) -> Starlette:
    """The demo app on ``database`` (a URL; default ``database_url()``) with ``secret``
    (default ``secret_key()``). Tables are created and seeded at start-up.
    ``fresh_login_age``: seconds a sign-in counts as fresh for the password change
    (default ``FRESH_LOGIN_AGE`` env, else 300). ``device_binding``: DBSC on (served
    over https, see docs/device-binding.md)."""
    if fresh_login_age is None:
        fresh_login_age = int(os.environ.get("FRESH_LOGIN_AGE") or FRESH_LOGIN_AGE)
    store = RoleStore(database or database_url(), sessions_table=SESSIONS_TABLE)
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
    # their next request, and any other change within `revalidate_after` seconds. The
    # registry records each sign-in (a row per session) for the "Active sessions" page.
    registry = SessionRegistry(store, device=coarse_device)
    freshness = Freshness(store, revalidate_after=60, registry=registry)
    if device_binding:  # a bound cookie fits one Set-Cookie line
        installed = Middleware(JWTSessionMiddleware, secret_key=secret or secret_key(),
                               freshness=freshness, device_binding=DeviceBinding(),
                               max_cookie_size=3800)
    else:
        installed = Middleware(JWTSessionMiddleware, secret_key=secret or secret_key(),
                               freshness=freshness)
    middleware = [installed]
    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/login/confirm", confirm_submit, methods=["POST"]),
        Route("/signout", sign_out, methods=["POST"]),
        Route("/dashboard", dashboard),
        Route("/org", org_page),
        Route("/admin", admin_page),
        Route("/admin/users/{user_id}/role", change_role, methods=["POST"]),
        Route("/admin/users/{user_id}/view-as", view_as, methods=["POST"]),
        Route("/view-as/stop", stop_view_as, methods=["POST"]),
        Route("/sessions", sessions_page),
        Route("/sessions/revoke-others", sessions_revoke_others, methods=["POST"]),
        Route("/sessions/{session_id}/revoke", sessions_revoke, methods=["POST"]),
        Route("/account/password", password_page, methods=["GET"]),
        Route("/account/password", password_submit, methods=["POST"]),
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
    app.state.fresh_login_age = fresh_login_age
    return app
