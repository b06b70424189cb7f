"""Guards: who may call an endpoint, and the responses for those who may not.

The guards raise :class:`NotAuthenticated` or :class:`PermissionDenied`;
:class:`JWTSessionMiddleware` turns them into a login redirect, 401, 403 or a websocket
close (4401 / 4403) with :func:`auth_error_response`.
"""

from __future__ import annotations

import functools
import html
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload
from urllib.parse import quote, urlencode

from starlette.authentication import AuthCredentials, BaseUser
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Scope
from starlette.websockets import WebSocket, WebSocketClose

from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Session, SessionUser, get_session

P = ParamSpec("P")
R = TypeVar("R")

Dependency = Callable[[HTTPConnection], Awaitable[SessionUser]]

DEFAULT_ROLES = RoleHierarchy()


class AuthError(Exception):
    """Base of the guard exceptions; the middleware turns one into a response."""

    status_code = 401
    close_code = 4401
    detail = "Not authenticated"

    def __init__(self, detail: str | None = None) -> None:
        if detail is not None:
            self.detail = detail
        super().__init__(self.detail)


class NotAuthenticated(AuthError):
    """Nobody is signed in: a redirect to the login page for browsers, else 401."""


class PermissionDenied(AuthError):
    """Signed in, but without a role that is needed: 403 (websockets: 4403)."""

    status_code = 403
    close_code = 4403
    detail = "Permission denied"


# --- checks ---------------------------------------------------------------------------


def check(conn: HTTPConnection | Scope, roles: tuple[str, ...]) -> SessionUser:
    scope = conn.scope if isinstance(conn, HTTPConnection) else conn
    session = get_session(scope)
    session.mark_accessed()  # the response depends on the cookie: Vary: Cookie
    user = session.user
    if user is None:
        raise NotAuthenticated()
    if roles:
        hierarchy = roles_of(scope)
        for role in roles:
            hierarchy.validate(role)  # a typo in a role name is a bug, not a 403
        if not hierarchy.satisfies(user.role, *roles):
            raise PermissionDenied()
    return user


def roles_of(scope: Scope) -> RoleHierarchy:
    middleware = scope.get("session_middleware")
    if middleware is None:
        return DEFAULT_ROLES
    roles: RoleHierarchy = middleware.config.roles
    return roles


def role_names(roles: tuple[Any, ...], name: str) -> tuple[str, ...]:
    if not roles:
        raise TypeError(f"{name}() needs at least one role")
    if not all(isinstance(role, str) for role in roles):
        raise TypeError(f"{name}() takes role names, like {name}(Role.ADMIN)")
    return tuple(str(role) for role in roles)


def find_connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection | Scope:
    values = (*args, *kwargs.values())
    for value in values:
        if isinstance(value, HTTPConnection):
            return value
    for value in values:  # a plain ASGI app: (scope, receive, send)
        if isinstance(value, dict) and value.get("type") in ("http", "websocket"):
            return value
    raise TypeError("a guarded endpoint needs a Request, WebSocket or ASGI scope argument")


def guard(func: Callable[P, R], roles: tuple[str, ...]) -> Callable[P, R]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            check(find_connection(args, kwargs), roles)
            return await func(*args, **kwargs)

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        check(find_connection(args, kwargs), roles)
        return func(*args, **kwargs)

    return wrapper


# --- public guards ----------------------------------------------------------------------


def requires_login(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator: the endpoint runs only for a signed-in user.

    Works on sync and async endpoints, ``HTTPEndpoint`` methods, websocket endpoints,
    FastAPI routes (with a ``Request`` parameter) and plain ASGI apps; the endpoint
    keeps its signature.
    """
    return guard(func, ())


def requires_role(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the endpoint runs only for a user with one of ``roles`` or a higher
    role in the middleware's :class:`RoleHierarchy`. See :func:`requires_login`."""
    names = role_names(roles, "requires_role")

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return guard(func, names)

    return decorator


@overload
def require_role(conn: HTTPConnection | Scope, /, *roles: str) -> SessionUser: ...
@overload
def require_role(*roles: str) -> Dependency: ...
def require_role(*args: Any) -> SessionUser | Dependency:
    """``require_role(request, *roles)``: the signed-in :class:`SessionUser` when its role
    is one of ``roles`` or higher; else raises :class:`NotAuthenticated` or
    :class:`PermissionDenied`, which the middleware turns into a response.

    ``require_role(*roles)`` with roles only returns a dependency for FastAPI:
    ``user: SessionUser = Depends(require_role(Role.ADMIN))``.
    """
    if args and not isinstance(args[0], str):
        return check(args[0], role_names(args[1:], "require_role"))
    names = role_names(args, "require_role")

    async def dependency(conn: HTTPConnection) -> SessionUser:
        return check(conn, names)

    return dependency


@overload
def require_admin(conn: HTTPConnection | Scope, /) -> SessionUser: ...
@overload
def require_admin() -> Dependency: ...
def require_admin(conn: HTTPConnection | Scope | None = None, /) -> SessionUser | Dependency:
    """``require_role`` for the highest role of the hierarchy (``ADMIN`` by default).

    ``require_admin()`` without a request returns a FastAPI dependency.
    """
    if conn is not None:
        scope = conn.scope if isinstance(conn, HTTPConnection) else conn
        return check(conn, (roles_of(scope).highest,))

    async def dependency(conn: HTTPConnection) -> SessionUser:
        return check(conn, (roles_of(conn.scope).highest,))

    return dependency


# --- responses ----------------------------------------------------------------------


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


def login_redirect_url(scope: Scope, login_url: str) -> str:
    """``login_url`` with ``next=`` set to this request's path and query."""
    target = quote(scope["path"], safe="/:@!$&'()*+,;=~")
    query = quote(scope.get("query_string", b""), safe="/?:@!$&'()*+,;=~%")
    if query:
        target = f"{target}?{query}"
    separator = "&" if "?" in login_url else "?"
    return f"{login_url}{separator}{urlencode({'next': safe_next(target)})}"


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


def auth_error_response(scope: Scope, exc: AuthError) -> ASGIApp:
    """The ASGI response for a guard's exception: a websocket close before accept
    (4401 / 4403), a redirect to the login page for a browser that is not signed in,
    a 403 page for a browser, or 401 / 403 JSON."""
    if scope["type"] == "websocket":
        return WebSocketClose(code=exc.close_code, reason=exc.detail)
    headers = {"vary": "Accept"}
    if prefers_html(scope):
        if isinstance(exc, NotAuthenticated):
            login_url = scope["session_middleware"].config.login_url
            url = login_redirect_url(scope, login_url)
            return RedirectResponse(url, status_code=303, headers=headers)
        page = FORBIDDEN_PAGE.format(detail=html.escape(exc.detail))
        return HTMLResponse(page, status_code=exc.status_code, headers=headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def handle_auth_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    """Starlette exception handler for :class:`AuthError`, for when the middleware wraps
    a Starlette app from outside (its own error middleware would answer 500 first)."""
    assert isinstance(exc, AuthError)
    if isinstance(conn, WebSocket):
        await conn.close(exc.close_code, exc.detail)
        return None
    response = auth_error_response(conn.scope, exc)
    assert isinstance(response, Response)
    return response


# --- Starlette's request.user and request.auth ------------------------------------


class SessionAuthUser(BaseUser):
    """``request.user``: Starlette's user interface over the session, read when asked."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def user(self) -> SessionUser | None:
        self.session.mark_accessed()
        return self.session.user

    @property
    def is_authenticated(self) -> bool:
        return self.user is not None

    @property
    def display_name(self) -> str:
        user = self.user
        return user.id if user is not None else ""

    @property
    def identity(self) -> str:
        return self.display_name

    @property
    def role(self) -> str | None:
        user = self.user
        return user.role if user is not None else None


class SessionCredentials(AuthCredentials):
    """``request.auth``: ``scopes`` are ``"authenticated"`` and ``"role:<R>"`` for the
    user's role and every role below it, so Starlette's ``@requires`` works."""

    def __init__(self, session: Session, roles: RoleHierarchy) -> None:
        self.session = session
        self.roles = roles

    @property
    def scopes(self) -> list[str]:  # type: ignore[override]
        self.session.mark_accessed()
        user = self.session.user
        return self.roles.scopes(user.role if user is not None else None)
