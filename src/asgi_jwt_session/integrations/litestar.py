"""Litestar: a plugin that installs the middleware, answers the guards' errors, and mounts
the session endpoints; guards in Litestar's own shape.

```python
from litestar import Litestar, Request, get

from asgi_jwt_session import auth
from asgi_jwt_session.integrations.litestar import JWTSessionPlugin, requires_role


@get("/admin", guards=[requires_role("ADMIN")])
async def admin(request: Request) -> dict[str, str]:
    session = auth(request)  # the package's Session, also request.session
    return {"admin": session.user.id}


app = Litestar([admin], plugins=[JWTSessionPlugin(secret_key="...")])
```

``request.session`` is the package's :class:`~asgi_jwt_session.Session`, and Litestar's
own ``request.clear_session()`` signs the user out (``request.set_session({...})``
replaces the session's data, nobody signed in). Guards not met answer as the
middleware does: a login redirect for a browser, 401 / 403 JSON otherwise, a
websocket closed with 4401 / 4403.

This module imports Litestar (the ``litestar`` extra); nothing else in the package does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import WebSocketException
from litestar.handlers import BaseRouteHandler, asgi
from litestar.middleware import DefineMiddleware
from litestar.plugins import InitPluginProtocol
from starlette.types import Receive, Scope, Send

from asgi_jwt_session.csrf import CSRF_COOKIE
from asgi_jwt_session.endpoints import session_app
from asgi_jwt_session.errors import AuthError
from asgi_jwt_session.integrations.base import DEFAULT_PREFIX, answer_for, check_request
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.session import SessionUser

if TYPE_CHECKING:
    from litestar.config.app import AppConfig

    from asgi_jwt_session.store.base import Store

__all__ = ["JWTSessionPlugin", "auth_error_handler", "requires_login", "requires_role",
           "session_user"]

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def auth_error_handler(request: Request[Any, Any, Any], exc: AuthError) -> Response[bytes]:
    """Litestar exception handler for the guards' :class:`~asgi_jwt_session.AuthError`."""
    answer = answer_for(request, exc)
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers),
                    media_type=answer.media_type)


def check_connection(connection: ASGIConnection[Any, Any, Any, Any],
                     roles: tuple[str, ...]) -> None:
    try:
        check_request(connection, roles)
    except AuthError as exc:
        if connection.scope["type"] != ScopeType.WEBSOCKET:
            raise  # answered by auth_error_handler
        # Litestar closes a websocket with the code of its own exception (else 4500).
        raise WebSocketException(detail=exc.detail, code=exc.close_code) from exc


def requires_login(connection: ASGIConnection[Any, Any, Any, Any],
                   _: BaseRouteHandler) -> None:
    """Litestar guard: a signed-in user (``guards=[requires_login]``)."""
    check_connection(connection, ())


def requires_role(*roles: str) -> Guard:
    """Litestar guard: a signed-in user with one of ``roles`` or a role above them in the
    hierarchy (``guards=[requires_role("ADMIN")]``)."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        check_connection(connection, roles)

    return guard


def session_user(request: Request[Any, Any, Any]) -> SessionUser:
    """Dependency: the signed-in user (``Provide(session_user, sync_to_thread=False)``),
    answered as :func:`requires_login` when nobody is signed in."""
    return check_request(request)


class JWTSessionPlugin(InitPluginProtocol):
    """Installs :class:`~asgi_jwt_session.JWTSessionMiddleware` (``secret_key`` and the
    middleware's keywords in ``options``), the :class:`~asgi_jwt_session.AuthError`
    handler, and the session endpoints at ``endpoints`` (``None``: none). ``store``,
    ``csrf_cookie``, ``trusted_origins`` are :func:`~asgi_jwt_session.endpoints.session_app`'s."""

    def __init__(self, secret_key: SecretKey, *, endpoints: str | None = DEFAULT_PREFIX,
                 store: Store | None = None, csrf_cookie: str = CSRF_COOKIE,
                 trusted_origins: Iterable[str] = (), **options: Any) -> None:
        self.secret_key = secret_key
        self.options = options
        self.prefix = endpoints
        self.store = store
        self.csrf_cookie = csrf_cookie
        self.trusted_origins = tuple(trusted_origins)

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        theirs = app_config.csrf_config.cookie_name if app_config.csrf_config else None
        if self.prefix is not None and theirs == self.csrf_cookie:
            raise ValueError(f"the session endpoints' CSRF cookie {theirs!r} is also Litestar's "
                             "(csrf_config): pass JWTSessionPlugin(..., csrf_cookie=...) "
                             "another name")
        if self.prefix is not None and app_config.csrf_config is not None:
            # The endpoints check their own double-submit token: Litestar's check skips them.
            csrf = app_config.csrf_config
            excluded = [csrf.exclude] if isinstance(csrf.exclude, str) else csrf.exclude or []
            csrf.exclude = [*excluded, f"^{re.escape(self.prefix)}(/|$)"]
        # Litestar types ASGI messages as TypedDicts; the middleware takes Starlette's.
        middleware = DefineMiddleware(JWTSessionMiddleware,  # type: ignore[arg-type]
                                      secret_key=self.secret_key, **self.options)
        app_config.middleware.insert(0, middleware)
        app_config.exception_handlers.setdefault(AuthError, auth_error_handler)
        if self.prefix is not None:
            endpoints = session_app(self.store, csrf_cookie=self.csrf_cookie,
                                    trusted_origins=self.trusted_origins)

            async def session_endpoints(scope: Scope, receive: Receive, send: Send) -> None:
                await endpoints(scope, receive, send)

            handler = asgi(self.prefix, is_mount=True, name="session_endpoints",
                           copy_scope=True)(session_endpoints)
            app_config.route_handlers.append(handler)
        return app_config
