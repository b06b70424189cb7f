"""Falcon (``falcon.asgi.App``): the middleware and the session endpoints around the
app, the guards' errors answered by an error handler, guards as ``@falcon.before`` hooks.

```python
import falcon
import falcon.asgi

from asgi_jwt_session.integrations.falcon import asgi_application, requires_role, session


class Admin:
    @falcon.before(requires_role("ADMIN"))
    async def on_get(self, req, resp):
        resp.media = {"admin": session(req).user.id}


app = falcon.asgi.App()
app.add_route("/admin", Admin())
application = asgi_application(app, secret_key="...")  # serve this one
```

A guard not met answers as the middleware does: a login redirect for a browser, 401 /
403 JSON otherwise, a websocket closed with 4401 / 4403 before it is accepted (call
:func:`require` at the top of ``on_websocket``).

This module imports Falcon (the ``falcon`` extra); nothing else in the package does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import falcon
import falcon.asgi
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

__all__ = ["asgi_application", "auth_error_handler", "require", "requires_login",
           "requires_role", "session"]

Hook = Callable[[falcon.asgi.Request, falcon.asgi.Response, object, dict[str, Any]],
                Awaitable[None]]


def session(req: falcon.asgi.Request) -> Session:
    """The package's :class:`~asgi_jwt_session.Session` of a Falcon request."""
    return session_of(req)


def require(req: falcon.asgi.Request, *roles: str) -> SessionUser:
    """The signed-in user, with one of ``roles`` when given; raises the guards'
    :class:`~asgi_jwt_session.AuthError` otherwise (answered by the error handler)."""
    return check_request(req, roles)


def requires_role(*roles: str) -> Hook:
    """A ``@falcon.before`` hook: a signed-in user with one of ``roles`` (any signed-in
    user when none)."""

    async def hook(req: falcon.asgi.Request, resp: falcon.asgi.Response, resource: object,
                   params: dict[str, Any]) -> None:
        check_request(req, roles)

    return hook


requires_login = requires_role()
"""A ``@falcon.before`` hook: the responder runs only for a signed-in user."""


async def auth_error_handler(req: falcon.asgi.Request, resp: falcon.asgi.Response | None,
                             ex: AuthError, params: dict[str, Any],
                             ws: falcon.asgi.WebSocket | None = None) -> None:
    """Falcon error handler for :class:`~asgi_jwt_session.AuthError`."""
    if ws is not None:
        await ws.close(ex.close_code)
        return
    assert resp is not None
    answer = answer_for(req, ex)
    resp.status = answer.status
    resp.data = answer.body
    if answer.media_type is not None:
        resp.content_type = answer.media_type
    for name, value in answer.headers:
        resp.set_header(name, value)


def asgi_application(app: falcon.asgi.App[Any, Any], secret_key: SecretKey, *,
                     endpoints: str | None = DEFAULT_PREFIX, store: Store | None = None,
                     trusted_origins: Iterable[str] = (), **options: Any
                     ) -> JWTSessionMiddleware:
    """``app`` under the middleware (its keywords in ``options``) with the session
    endpoints at ``endpoints`` (``None``: none), and the error handler added to it:
    the ASGI app to serve."""
    app.add_error_handler(AuthError, auth_error_handler)
    inner: ASGIApp = app  # type: ignore[assignment]  # Falcon types scope as dict
    return wrap(inner, secret_key, endpoints=endpoints, store=store,
                trusted_origins=trusted_origins, **options)
