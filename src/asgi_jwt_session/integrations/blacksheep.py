"""BlackSheep: the middleware and the session endpoints around the app, the guards'
errors answered by an exception handler, guards as decorators.

```python
from blacksheep import Application, Request, json

from asgi_jwt_session.integrations.blacksheep import asgi_application, requires_role, session

app = Application()


@app.router.get("/admin")
@requires_role("ADMIN")
async def admin(request: Request):
    return json({"admin": session(request).user.id})


application = asgi_application(app, secret_key="...")  # serve this one
```

A guarded handler takes its ``request: Request`` (or ``websocket: WebSocket``). A
guard not met answers as the middleware does: a login redirect for a browser, 401 / 403
JSON otherwise, a websocket closed with 4401 / 4403 before it is accepted.

This module imports BlackSheep (the ``blacksheep`` extra); nothing else in the package
does.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from blacksheep import Application, Content, Request, Response, WebSocket

from asgi_jwt_session.errors import AuthError
from asgi_jwt_session.integrations.base import (
    DEFAULT_PREFIX,
    answer_for,
    check_request,
    find_request,
    session_of,
    wrap,
)
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.session import Session

if TYPE_CHECKING:
    from asgi_jwt_session.store.base import Store

__all__ = ["asgi_application", "auth_error_handler", "requires_login", "requires_role",
           "session"]

P = ParamSpec("P")
R = TypeVar("R")


def session(request: Request | WebSocket) -> Session:
    """The package's :class:`~asgi_jwt_session.Session` of a BlackSheep request."""
    return session_of(request)


def requires_role(*roles: str
                  ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorator for an async handler that takes its request (or websocket): a
    signed-in user with one of ``roles`` (any signed-in user when none)."""

    def decorator(handler: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(handler)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            found = find_request(args, kwargs)
            try:
                check_request(found, roles)
            except AuthError as exc:
                if not isinstance(found, WebSocket):
                    raise  # answered by auth_error_handler
                await found.close(exc.close_code)  # refused before accept: 4401 / 4403
                return None  # type: ignore[return-value]
            return await handler(*args, **kwargs)

        return guarded

    return decorator


requires_login = requires_role()
"""Decorator: the handler runs only for a signed-in user."""


async def auth_error_handler(app: Application, request: Request, exc: AuthError) -> Response:
    """BlackSheep exception handler for :class:`~asgi_jwt_session.AuthError`."""
    answer = answer_for(request, exc)
    headers = [(name.encode("latin-1"), value.encode("latin-1"))
               for name, value in answer.headers]
    content = Content((answer.media_type or "text/plain").encode(), answer.body)
    return Response(answer.status, headers, content)


def asgi_application(app: Application, secret_key: SecretKey, *,
                     endpoints: str | None = DEFAULT_PREFIX, store: Store | None = None,
                     trusted_origins: Iterable[str] = (), **options: Any
                     ) -> JWTSessionMiddleware:
    """``app`` under the middleware (its keywords in ``options``) with the session
    endpoints at ``endpoints`` (``None``: none), and the exception handler added to it:
    the ASGI app to serve."""
    app.exceptions_handlers[AuthError] = auth_error_handler
    return wrap(app, secret_key, endpoints=endpoints, store=store,
                trusted_origins=trusted_origins, **options)
