"""Django (ASGI): the middleware and the session endpoints around Django's ASGI
application, the package's session in a view, guards as view decorators.

```python
# asgi.py
from asgi_jwt_session.integrations.django import asgi_application

application = asgi_application(secret_key="...")  # Django's settings must be set up

# views.py
from asgi_jwt_session.integrations.django import requires_role, session


@requires_role("ADMIN")
def admin(request):
    return JsonResponse({"admin": session(request).user.id})
```

``request.session`` stays Django's own; the package's session is :func:`session`
(``asgi_jwt_session.auth(request)``, ``login(request, ...)`` and ``logout(request)``
take a Django request too). Django's CSRF cookie is ``csrftoken``, the name the session
endpoints' double-submit cookie has elsewhere: here it is ``jwt_csrftoken``, and
:func:`asgi_application` refuses a cookie name that Django uses itself. A guard not met
answers as the middleware does: a login redirect for a browser, 401 / 403 JSON
otherwise. :class:`AuthErrorMiddleware` (in ``MIDDLEWARE``) answers the same way for
``require_role(request, ...)`` called inside a view.

This module imports Django (the ``django`` extra); nothing else in the package does.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
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
from asgi_jwt_session.session import Session

if TYPE_CHECKING:
    from asgi_jwt_session.store.base import Store

__all__ = ["DEFAULT_CSRF_COOKIE", "AuthErrorMiddleware", "asgi_application", "error_response",
           "requires_login", "requires_role", "session"]

DEFAULT_CSRF_COOKIE = "jwt_csrftoken"

View = Callable[..., Any]


def session(request: HttpRequest) -> Session:
    """The package's :class:`~asgi_jwt_session.Session` of a Django request (served
    under ASGI, through :func:`asgi_application`)."""
    return session_of(request)


def error_response(request: HttpRequest, exc: AuthError) -> HttpResponse:
    """The Django response for a guard's error: login redirect, 401 or 403."""
    answer = answer_for(request, exc)
    response = HttpResponse(answer.body, status=answer.status, content_type=answer.media_type)
    for name, value in answer.headers:
        response[name] = value
    return response


def requires_role(*roles: str) -> Callable[[View], View]:
    """View decorator (sync or async views): a signed-in user with one of ``roles`` (any
    signed-in user when none)."""

    def decorator(view: View) -> View:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                try:
                    check_request(request, roles)
                except AuthError as exc:
                    return error_response(request, exc)
                return await view(request, *args, **kwargs)

            return async_guarded

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            try:
                check_request(request, roles)
            except AuthError as exc:
                return error_response(request, exc)
            return view(request, *args, **kwargs)

        return guarded

    return decorator


requires_login = requires_role()
"""View decorator: the view runs only for a signed-in user."""


class AuthErrorMiddleware:
    """Django middleware: a guard's :class:`~asgi_jwt_session.AuthError` raised in a view
    is answered as a login redirect, 401 or 403 rather than a 500."""

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception
                          ) -> HttpResponse | None:
        if isinstance(exception, AuthError):
            return error_response(request, exception)
        return None


def asgi_application(secret_key: SecretKey, *, app: ASGIApp | None = None,
                     session_cookie: str = "session", csrf_cookie: str = DEFAULT_CSRF_COOKIE,
                     endpoints: str | None = DEFAULT_PREFIX, store: Store | None = None,
                     trusted_origins: Iterable[str] = (), **options: Any
                     ) -> JWTSessionMiddleware:
    """Django's ASGI application (``app``, or ``get_asgi_application()``) under the
    middleware (its keywords in ``options``), with the session endpoints at
    ``endpoints`` (``None``: none). Raises ``ValueError`` when ``session_cookie`` or
    ``csrf_cookie`` is a cookie name Django uses (``SESSION_COOKIE_NAME``,
    ``CSRF_COOKIE_NAME``, ``LANGUAGE_COOKIE_NAME``)."""
    taken = {getattr(settings, name, None): name for name in
             ("SESSION_COOKIE_NAME", "CSRF_COOKIE_NAME", "LANGUAGE_COOKIE_NAME")}
    for ours in (session_cookie, csrf_cookie):
        if ours in taken:
            raise ValueError(f"the cookie name {ours!r} is Django's own ({taken[ours]}): "
                             "pick another name")
    inner: ASGIApp = app if app is not None else get_asgi_application()
    return wrap(inner, secret_key, endpoints=endpoints, store=store,
                trusted_origins=trusted_origins, csrf_cookie=csrf_cookie,
                session_cookie=session_cookie, **options)
