"""HTTP answers for the guards: login redirect, 401/403 (HTML or JSON), websocket
refusals; and 503 with ``Retry-After`` for a role store that cannot be reached.

A websocket refused before it was accepted gets an HTTP answer (401 / 403 JSON) where
the server supports the ASGI websocket denial response, else it is accepted and closed
at once with the code (4401 / 4403): a server turns a close before accept into a plain
HTTP 403, which would tell a client nothing.

Also the content negotiation behind them (:func:`prefers_html`) and :func:`safe_next`,
the check a login page uses before it sends the browser on.

When :class:`~asgi_jwt_session.middleware.JWTSessionMiddleware` is installed inside a
Starlette app (``Starlette(middleware=[Middleware(JWTSessionMiddleware, ...)])``) it
answers the guards' exceptions itself. Wrapped around a whole Starlette app from
outside (``JWTSessionMiddleware(Starlette(...), ...)``) it answers them too, through
:class:`HeldServerErrors` (Starlette's own error middleware answers 500 and re-raises);
such an app may also say it outright, which is the one way for a mounted sub-app::

    app = Starlette(routes=routes, exception_handlers=exception_handlers)

:data:`exception_handlers` also answers
:class:`~asgi_jwt_session.errors.StoreUnavailable` from the app's own store calls (a
sign-in form, an admin page) with 503 and ``Retry-After`` instead of a 500; add it to
any app that calls the store, however the middleware is installed.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from asgi_jwt_session.context import get_context
from asgi_jwt_session.errors import (
    AuthError,
    NotAuthenticated,
    ReauthenticationRequired,
    StoreUnavailable,
)

__all__ = [
    "HeldServerErrors",
    "WebSocketRefusal",
    "auth_error_response",
    "exception_handlers",
    "handle_auth_error",
    "login_redirect_url",
    "prefers_html",
    "safe_next",
    "store_unavailable_handler",
    "store_unavailable_response",
]

logger = logging.getLogger("asgi_jwt_session")

DEFAULT_LOGIN_URL = "/login"
RETRY_AFTER = 5  # seconds a client is asked to wait when the role store is unreachable


def safe_next(value: object, default: str = "/") -> str:
    """``value`` when it is a safe place to send the browser after login, else ``default``.

    Safe means a path on this site: it starts with one ``/``, has no scheme or host, no
    backslash, no whitespace, control or other unprintable character and no ``.`` or
    ``..`` segment, so that no browser can read it as another origin
    (``//evil.example``, ``/\\evil.example``, ``https://evil.example``, a tab after
    the ``/``). Use it on the ``next`` a login page is given before redirecting there.
    """
    if not isinstance(value, str) or not value.startswith("/") or value[1:2] == "/":
        return default
    if "\\" in value or " " in value or not value.isprintable():
        return default  # browsers drop or rewrite these (tab, newline, backslash)
    path = value.partition("?")[0].partition("#")[0]
    segments = path.lower().replace("%2e", ".").split("/")
    if "." in segments or ".." in segments:
        return default
    return value


def login_redirect_url(scope: Scope, login_url: str, *, reauth: bool = False) -> str:
    """``login_url`` with ``next=`` set to this request's path and query (and
    ``reauth=1`` when the user is signed in but must prove their credentials again)."""
    target = quote(scope["path"], safe="/:@!$&'()*+,;=~")
    query = quote(scope.get("query_string", b""), safe="/?:@!$&'()*+,;=~%")
    if query:
        target = f"{target}?{query}"
    separator = "&" if "?" in login_url else "?"
    params = {"next": safe_next(target)}
    if reauth:
        params["reauth"] = "1"
    return f"{login_url}{separator}{urlencode(params)}"


def prefers_html(scope: Scope) -> bool:
    """True when the Accept header ranks ``text/html`` above ``application/json``
    (a browser navigating); ``*/*`` alone, as ``fetch()`` sends, is not HTML."""
    accept = ""
    for key, value in scope["headers"]:
        if key == b"accept":
            accept = value.decode("latin-1")
            break
    if "text/" not in accept:
        return False
    ranges = []
    for item in accept.lower().split(","):
        media_range, *params = item.split(";")
        media_type, _, subtype = media_range.strip().partition("/")
        q = 1.0
        for param in params:
            name, _, number = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(number)
                except ValueError:
                    q = 0.0
        ranges.append((media_type, subtype, q))
    return quality(ranges, "text", "html") > quality(ranges, "application", "json")


def quality(ranges: list[tuple[str, str, float]], media_type: str, subtype: str) -> float:
    """The q of the most specific range that matches ``media_type/subtype`` (0 if none)."""
    best, q = -1, 0.0
    for range_type, range_subtype, range_q in ranges:
        if range_type in ("*", media_type) and range_subtype in ("*", subtype):
            specificity = (range_type != "*") + (range_subtype != "*")
            if specificity > best:
                best, q = specificity, range_q
    return q


FORBIDDEN_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>403 Forbidden</title></head>
<body><h1>403 Forbidden</h1><p>{detail}</p></body>
</html>
"""
ERROR_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{status}</title></head>
<body><h1>{status}</h1><p>{detail}</p></body>
</html>
"""


class WebSocketRefusal:
    """Refuses a websocket that was not accepted yet, so that a real client sees why.

    Where the server supports the ASGI websocket denial response
    (``"websocket.http.response"`` in ``scope["extensions"]``) the handshake is answered
    with an HTTP ``status_code`` and ``body`` as JSON; otherwise the websocket is
    accepted and closed at once with ``close_code`` and ``reason``.
    """

    def __init__(self, status_code: int, close_code: int, body: Mapping[str, str],
                 reason: str = "") -> None:
        self.response = JSONResponse(body, status_code=status_code)
        self.close_code = close_code
        # A close frame carries at most 123 bytes of reason.
        self.reason = reason.encode()[:123].decode(errors="ignore")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await self.response(scope, receive, send)  # sent as the denial response
            return
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": self.close_code, "reason": self.reason})


def error_body(exc: AuthError) -> dict[str, str]:
    """The JSON body of a refusal: ``detail``, and ``reason`` when ``exc`` has one."""
    body = {"detail": exc.detail}
    if exc.reason is not None:
        body["reason"] = exc.reason
    return body


def auth_error_response(scope: Scope, exc: AuthError) -> ASGIApp:
    """The ASGI response for a guard's exception: for a websocket not accepted yet a
    :class:`WebSocketRefusal` (401 / 403 / 400 JSON, or a close with 4401 / 4403 /
    4400), a redirect to the login page for a browser that is not signed in (with
    ``reauth=1`` for :class:`ReauthenticationRequired`), a 403 (or 400) page for a
    browser, or 401 / 403 / 400 JSON (``detail``, and ``reason`` when the exception has
    one)."""
    if scope["type"] == "websocket":
        return WebSocketRefusal(exc.status_code, exc.close_code, error_body(exc), exc.detail)
    headers = {"vary": "Accept"}
    if prefers_html(scope):
        if isinstance(exc, NotAuthenticated):
            context = get_context(scope)
            login_url = context.login_url if context is not None else DEFAULT_LOGIN_URL
            url = login_redirect_url(scope, login_url,
                                     reauth=isinstance(exc, ReauthenticationRequired))
            return RedirectResponse(url, status_code=303, headers=headers)
        if exc.status_code == 403:
            page = FORBIDDEN_PAGE.format(detail=html.escape(exc.detail))
        else:
            status = f"{exc.status_code} {HTTPStatus(exc.status_code).phrase}"
            page = ERROR_PAGE.format(status=status, detail=html.escape(exc.detail))
        return HTMLResponse(page, status_code=exc.status_code, headers=headers)
    return JSONResponse(error_body(exc), status_code=exc.status_code, headers=headers)


class HeldServerErrors:
    """Wraps a Starlette app that has no handler for :class:`AuthError`, for the session
    middleware around it: the app's error middleware answers a guard's exception with
    500 and then re-raises it, so an HTTP 500 is held until the app is done. When an
    ``AuthError`` follows, the 500 is dropped and the exception goes on to the session
    middleware, which answers it (401, 403, a login redirect); otherwise the 500 is
    sent as it was. Other responses pass at once."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold_500(message: Message) -> None:
            if held or (message["type"] == "http.response.start"
                        and message.get("status") == 500):
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, hold_500)
        except AuthError:
            held.clear()  # answered by the session middleware instead
            raise
        finally:
            for message in held:
                await send(message)


async def refuse_websocket(websocket: WebSocket, refusal: WebSocketRefusal) -> None:
    """Send ``refusal`` on a Starlette ``websocket``; one already accepted is closed
    with the refusal's code."""
    if websocket.application_state != WebSocketState.CONNECTING:
        await websocket.close(refusal.close_code, refusal.reason)
        return
    if websocket.client_state == WebSocketState.CONNECTING:
        await websocket.receive()  # the websocket.connect message, as accept() reads it
    await refusal(websocket.scope, websocket.receive, websocket.send)


async def handle_auth_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    """Starlette exception handler for :class:`AuthError`, for a Starlette app that
    answers its errors before the middleware sees them: one mounted inside the app that
    has the middleware (its own error middleware would answer 500 first)."""
    assert isinstance(exc, AuthError)
    if isinstance(conn, WebSocket):
        refusal = auth_error_response(conn.scope, exc)
        assert isinstance(refusal, WebSocketRefusal)
        await refuse_websocket(conn, refusal)
        return None
    response = auth_error_response(conn.scope, exc)
    assert isinstance(response, Response)
    return response


UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>503 Service Unavailable</title></head>
<body><h1>503 Service Unavailable</h1>
<p>The service cannot reach its database just now. Try again in a few seconds.</p></body>
</html>
"""
UNAVAILABLE_DETAIL = "The database cannot be reached just now; try again later"
TRY_AGAIN_LATER = 1013  # the websocket close code


def store_unavailable_response(scope: Scope, retry_after: int = RETRY_AFTER) -> ASGIApp:
    """503 with ``Retry-After`` (an HTML page for a browser, else JSON ``detail``), or
    for a websocket a :class:`WebSocketRefusal` (503 JSON, or a close with 1013, try
    again later)."""
    if scope["type"] == "websocket":
        return WebSocketRefusal(503, TRY_AGAIN_LATER, {"detail": UNAVAILABLE_DETAIL},
                                "database unavailable")
    headers = {"retry-after": str(retry_after), "vary": "Accept"}
    if prefers_html(scope):
        return HTMLResponse(UNAVAILABLE_PAGE, status_code=503, headers=headers)
    return JSONResponse({"detail": UNAVAILABLE_DETAIL}, status_code=503, headers=headers)


async def store_unavailable_handler(conn: HTTPConnection, exc: Exception) -> Response | None:
    """Starlette exception handler for
    :class:`~asgi_jwt_session.errors.StoreUnavailable`: 503 with ``Retry-After``
    (the cause is logged at warning level; the client sees no detail of it)."""
    logger.warning("%s %s: 503, %s", conn.scope.get("method", "WEBSOCKET"),
                   conn.scope.get("path", ""), exc)
    if isinstance(conn, WebSocket):
        refusal = store_unavailable_response(conn.scope)
        assert isinstance(refusal, WebSocketRefusal)
        await refuse_websocket(conn, refusal)
        return None
    response = store_unavailable_response(conn.scope)
    assert isinstance(response, Response)
    return response


exception_handlers: Mapping[Any, Any] = {
    AuthError: handle_auth_error,
    StoreUnavailable: store_unavailable_handler,
}
"""``Starlette(..., exception_handlers=exception_handlers)``: answers the guards'
exceptions in a mounted sub-app (an app the middleware wraps from outside is answered
without it), and the role store's
:class:`~asgi_jwt_session.errors.StoreUnavailable` (503, ``Retry-After``) in any app."""
