"""Quart: install the middleware and the session endpoints on an app, answer the guards'
errors, guard views with decorators, read the session of the current request.

```python
from quart import Quart

from asgi_jwt_session import login
from asgi_jwt_session.integrations.quart import current_session, install, requires_role

app = Quart(__name__)
install(app, secret_key="...")  # the cookie is "jwt_session": Quart's own is "session"


@app.get("/admin")
@requires_role("ADMIN")
async def admin() -> dict[str, str]:
    return {"admin": current_session().user.id}
```

Quart keeps its own signed session (``quart.session``) in a cookie named by
``SESSION_COOKIE_NAME`` (``"session"``); this package's cookie defaults to
``"jwt_session"`` here, and :func:`install` refuses a name that collides. Guards not
met answer as the middleware does: a login redirect for a browser, 401 / 403 JSON
otherwise, a websocket closed with 4401 / 4403 before it is accepted.

This module imports Quart (the ``quart`` extra); nothing else in the package does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from quart import Quart, Response, has_websocket_context, request, websocket
from starlette.types import ASGIApp

from asgi_jwt_session.errors import AuthError
from asgi_jwt_session.integrations.base import (
    DEFAULT_PREFIX,
    answer_for,
    check_request,
    session_of,
    wrap,
)
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.session import Session, SessionUser

if TYPE_CHECKING:
    from asgi_jwt_session.store.base import Store

__all__ = ["DEFAULT_COOKIE", "current_session", "current_user", "install", "requires_login",
           "requires_role"]

DEFAULT_COOKIE = "jwt_session"

P = ParamSpec("P")
R = TypeVar("R")
View = Callable[P, Coroutine[Any, Any, R]]


def current_connection() -> object:
    return websocket if has_websocket_context() else request


def current_session() -> Session:
    """The package's :class:`~asgi_jwt_session.Session` of the current request or
    websocket (``quart.session`` stays Quart's own)."""
    return session_of(current_connection())


def current_user(*roles: str) -> SessionUser:
    """The signed-in user of the current request, with one of ``roles`` when given;
    raises the guards' :class:`~asgi_jwt_session.AuthError` otherwise."""
    return check_request(current_connection(), roles)


def requires_role(*roles: str) -> Callable[[View[P, R]], View[P, R]]:
    """Decorator for an async view or websocket handler: a signed-in user with one of
    ``roles`` (any signed-in user when none)."""

    def decorator(view: View[P, R]) -> View[P, R]:
        @functools.wraps(view)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            if has_websocket_context():
                try:
                    check_request(websocket, roles)
                except AuthError as exc:  # refused before accept: 4401 / 4403
                    await websocket.close(exc.close_code, exc.detail)
                    return None  # type: ignore[return-value]
            else:
                check_request(request, roles)
            return await view(*args, **kwargs)

        return guarded

    return decorator


requires_login = requires_role()
"""Decorator: the view runs only for a signed-in user."""


async def auth_error_handler(exc: AuthError) -> Response:
    """Quart error handler for :class:`~asgi_jwt_session.AuthError` on HTTP requests
    (a guarded websocket is closed by the guard itself)."""
    answer = answer_for(request, exc)
    return Response(answer.body, status=answer.status, headers=dict(answer.headers),
                    content_type=answer.media_type)


def install(app: Quart, secret_key: SecretKey, *, session_cookie: str = DEFAULT_COOKIE,
            endpoints: str | None = DEFAULT_PREFIX, store: Store | None = None,
            trusted_origins: Iterable[str] = (), **options: Any) -> JWTSessionMiddleware:
    """Wrap ``app.asgi_app`` in the middleware (its keywords in ``options``), mount the
    session endpoints at ``endpoints`` (``None``: none) and register the
    :class:`~asgi_jwt_session.AuthError` handler. Returns the middleware.

    Raises ``ValueError`` when ``session_cookie`` is the name of Quart's own session
    cookie (``SESSION_COOKIE_NAME``): the two would overwrite each other."""
    if session_cookie == app.config.get("SESSION_COOKIE_NAME"):
        raise ValueError(
            f"session_cookie={session_cookie!r} is Quart's own session cookie "
            "(SESSION_COOKIE_NAME): keep the default 'jwt_session' or pick another name")
    # Quart types ASGI messages as TypedDicts; the middleware takes Starlette's.
    inner: ASGIApp = app.asgi_app  # type: ignore[assignment]
    middleware = wrap(inner, secret_key, endpoints=endpoints, store=store,
                      trusted_origins=trusted_origins, session_cookie=session_cookie,
                      **options)
    app.asgi_app = middleware  # type: ignore[method-assign,assignment]
    app.register_error_handler(AuthError, auth_error_handler)
    return middleware
