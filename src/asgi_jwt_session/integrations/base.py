"""What the framework integrations share: the ASGI scope behind a framework's request, a
guard's error as a plain status, headers and body, and a prefix dispatcher that puts the
session endpoints beside an app."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_jwt_session.csrf import CSRF_COOKIE
from asgi_jwt_session.endpoints import route_path, session_app
from asgi_jwt_session.errors import AuthError
from asgi_jwt_session.guards import check
from asgi_jwt_session.keys import SecretKey
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.responses import auth_error_response
from asgi_jwt_session.session import Session, SessionUser, get_session

if TYPE_CHECKING:
    from asgi_jwt_session.store.base import Store

__all__ = ["Answer", "Mounted", "answer_for", "check_request", "find_request", "scope_of",
           "session_of", "wrap"]

DEFAULT_PREFIX = "/auth"


def scope_of(request: object) -> Scope:
    """The ASGI scope of a framework's request object (every framework here keeps it
    in ``request.scope``), or the scope itself."""
    scope = request if isinstance(request, dict) else getattr(request, "scope", None)
    if not isinstance(scope, dict):
        raise TypeError(f"{type(request).__name__} carries no ASGI scope")
    return scope


def session_of(request: object) -> Session:
    """The package's :class:`~asgi_jwt_session.Session` of a framework's request."""
    return get_session(scope_of(request))


def check_request(request: object, roles: tuple[str, ...] = ()) -> SessionUser:
    """The signed-in user of ``request`` if they have one of ``roles`` (any role when
    none), or raise the guards' :class:`~asgi_jwt_session.AuthError`."""
    return check(scope_of(request), roles)


def find_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    """The first argument of a view that carries an ASGI scope: its request."""
    for value in (*args, *kwargs.values()):
        if isinstance(getattr(value, "scope", None), dict):
            return value
    raise TypeError("a guarded view needs its request as an argument")


@dataclass
class Answer:
    """A guard's error as an HTTP answer: 303 to the login page, 401/403 JSON or HTML."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    media_type: str | None


def answer_for(request: object, exc: AuthError) -> Answer:
    """How the middleware would answer ``exc`` on an HTTP request, for a framework's
    exception handler to send in its own response type."""
    response = auth_error_response(scope_of(request), exc)
    assert isinstance(response, Response)
    headers = [(key.decode("latin-1"), value.decode("latin-1"))
               for key, value in response.raw_headers
               if key not in (b"content-length", b"content-type")]
    return Answer(response.status_code, headers, bytes(response.body), response.media_type)


class Mounted:
    """An ASGI app that sends the requests under ``prefix`` to ``endpoints`` and every
    other one to ``app``: the session endpoints beside a framework that cannot mount an
    ASGI app itself."""

    def __init__(self, app: ASGIApp, endpoints: ASGIApp, prefix: str = DEFAULT_PREFIX) -> None:
        if not prefix.startswith("/") or prefix.endswith("/"):
            raise ValueError(f"prefix must start with / and not end with one: {prefix!r}")
        self.app = app
        self.endpoints = endpoints
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            prefix = self.prefix
            if path == prefix or path.startswith(prefix + "/"):
                root_path = scope.get("root_path", "")
                child = {**scope, "root_path": root_path + prefix, "path": root_path + path}
                await self.endpoints(child, receive, send)
                return
        await self.app(scope, receive, send)


def wrap(app: ASGIApp, secret_key: SecretKey, *, endpoints: str | None = DEFAULT_PREFIX,
         store: Store | None = None, trusted_origins: Iterable[str] = (),
         csrf_cookie: str = CSRF_COOKIE, **options: Any) -> JWTSessionMiddleware:
    """``app`` under the middleware (its keywords in ``options``), with the session
    endpoints (``store``, ``trusted_origins`` and ``csrf_cookie`` are theirs) mounted
    at ``endpoints`` beside it (``None``: none)."""
    if endpoints is not None:
        endpoints_app = session_app(store, trusted_origins=trusted_origins,
                                    csrf_cookie=csrf_cookie)
        app = Mounted(app, endpoints_app, endpoints)
    return JWTSessionMiddleware(app, secret_key, **options)
