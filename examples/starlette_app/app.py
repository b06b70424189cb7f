"""Starlette with encrypted JWT cookie sessions: an HTML sign-in form with CSRF, guarded
pages, a guarded websocket and sign-out; cookie only (no database).

Run it from this folder: ``uvicorn app:app --reload``; ``SESSION_SECRET`` comes from the
environment. Form posts need ``python-multipart``.
"""

import hmac
import html
import logging
import os
import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_jwt_session import (
    JWTSessionMiddleware,
    Role,
    auth,
    login,
    require_role,
    requires_login,
    requires_role,
)
from asgi_jwt_session.csrf import csrf_token, set_csrf_cookie, verify_csrf
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.responses import safe_next

logger = logging.getLogger("uvicorn.error")

# username: (role, password). A real app checks a password hash kept in its own table.
ACCOUNTS = {
    "ada": (Role.ADMIN, "ada-password"),
    "olga": (Role.ORG_ADMIN, "olga-password"),
    "bob": (Role.USER, "bob-password"),
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def page(request: Request, title: str, body: str, status_code: int = 200) -> Response:
    """An HTML page; forms on it carry the CSRF token (its cookie is set when new)."""
    token = html.escape(csrf_token(request))
    response = HTMLResponse(PAGE.format(title=html.escape(title),
                                        body=body.replace("{csrf}", token)),
                            status_code=status_code)
    set_csrf_cookie(request, response)
    return response


SIGN_OUT = """<form method="post" action="/auth/signout">
<input type="hidden" name="csrf_token" value="{csrf}">
<button>Sign out</button></form>"""


async def home(request: Request) -> Response:
    session = auth(request)
    if session is None:
        return page(request, "Welcome", '<p><a href="/login">Sign in</a></p>')
    user = session.user
    return page(request, f"Hello {user.id}",
                f"<p>Role: {html.escape(user.role)}; the session ends "
                f"{session.expires:%Y-%m-%d %H:%M} UTC.</p>"
                '<p><a href="/org">Organization</a></p>' + SIGN_OUT)


async def login_page(request: Request) -> Response:
    if request.method == "GET":
        next_url = html.escape(safe_next(request.query_params.get("next")))
        return page(request, "Sign in", f"""<form method="post">
<input type="hidden" name="csrf_token" value="{{csrf}}">
<input type="hidden" name="next" value="{next_url}">
<input name="username" placeholder="username"> <input name="password" type="password">
<button>Sign in</button></form>""")
    await verify_csrf(request)  # a forged post gets 403
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    account = ACCOUNTS.get(username)
    if account is None or not hmac.compare_digest(account[1].encode(), password.encode()):
        return page(request, "Sign in", '<p>Wrong username or password. '
                    '<a href="/login">Try again</a></p>', status_code=401)
    login(request, username, account[0])
    return RedirectResponse(safe_next(form.get("next")), status_code=303)


@requires_role(Role.ORG_ADMIN)  # ORG_ADMIN or ADMIN; a browser not signed in goes to /login
async def org(request: Request) -> Response:
    return page(request, "Organization", "<p>Members: ada, olga, bob.</p>")


async def api_me(request: Request) -> Response:
    user = require_role(request, Role.USER)  # USER or higher; 401 JSON when signed out
    return JSONResponse({"id": user.id, "role": user.role})


@requires_login  # closed with 4401 before accept when nobody is signed in
async def ws(websocket: WebSocket) -> None:
    session = auth(websocket)
    assert session is not None
    await websocket.accept()
    await websocket.send_json({"hello": session.user.id})
    await websocket.close()


def create_app(secret_key: str | None = None) -> Starlette:
    """The app; ``secret_key`` defaults to ``SESSION_SECRET`` (else a random one)."""
    if secret_key is None:
        secret_key = os.environ.get("SESSION_SECRET")
    if not secret_key:
        logger.warning("SESSION_SECRET is not set: using a random one (asgi-jwt-session keygen)")
        secret_key = secrets.token_urlsafe(32)
    return Starlette(
        routes=[
            Route("/", home),
            Route("/login", login_page, methods=["GET", "POST"]),
            Route("/org", org),
            Route("/api/me", api_me),
            WebSocketRoute("/ws", ws),
            session_routes(),  # /auth/session, /auth/signout, /auth/session.js
        ],
        middleware=[Middleware(JWTSessionMiddleware, secret_key=secret_key)],
    )


app = create_app()
