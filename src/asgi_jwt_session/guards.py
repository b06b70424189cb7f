"""Guards: who may call an endpoint.

The guards raise :class:`~asgi_jwt_session.errors.NotAuthenticated` (or its
:class:`~asgi_jwt_session.errors.ReauthenticationRequired`) or
:class:`~asgi_jwt_session.errors.PermissionDenied`; the middleware turns them into a
login redirect, 401, 403 or a websocket refusal (401 / 403, or a close with 4401 /
4403) with
:func:`~asgi_jwt_session.responses.auth_error_response`.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from starlette.requests import HTTPConnection
from starlette.types import Scope

from asgi_jwt_session.context import get_context
from asgi_jwt_session.errors import NotAuthenticated, PermissionDenied, ReauthenticationRequired
from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import SessionUser, get_session, takes_connection

__all__ = [
    "require_admin",
    "require_fresh_login",
    "require_role",
    "requires_fresh_login",
    "requires_login",
    "requires_role",
]

P = ParamSpec("P")
R = TypeVar("R")

Dependency = Callable[[HTTPConnection], Awaitable[SessionUser]]
Check = Callable[[HTTPConnection | Scope], SessionUser]

DEFAULT_ROLES = RoleHierarchy()
FRESH_LOGIN_AGE = 300  # seconds: how recent a sign-in requires_fresh_login asks for


# --- checks ---------------------------------------------------------------------------


def check(conn: HTTPConnection | Scope, roles: tuple[str, ...]) -> SessionUser:
    session = get_session(conn)
    session.mark_accessed()  # the response depends on the cookie: Vary: Cookie
    user = session.user
    if user is None:
        raise NotAuthenticated()
    if roles:
        hierarchy = roles_of(conn)
        for role in roles:
            hierarchy.validate(role)  # a typo in a role name is a bug, not a 403
        if not hierarchy.satisfies(user.role, *roles):
            raise PermissionDenied()
    return user


def check_fresh(conn: HTTPConnection | Scope, max_age: int) -> SessionUser:
    user = check(conn, ())
    authenticated_at = get_session(conn).authenticated_at
    if authenticated_at is None or int(time.time()) - authenticated_at > max_age:
        raise ReauthenticationRequired()
    return user


def fresh_age(max_age: object) -> int:
    if callable(max_age):
        raise TypeError("requires_fresh_login takes its options: @requires_fresh_login() "
                        "or @requires_fresh_login(max_age=300)")
    if type(max_age) is not int or max_age < 0:
        raise ValueError("max_age must be a number of seconds (an int >= 0)")
    return max_age


def roles_of(conn: HTTPConnection | Scope) -> RoleHierarchy:
    context = get_context(conn)
    return context.roles if context is not None else DEFAULT_ROLES


def role_names(roles: tuple[Any, ...], name: str) -> tuple[str, ...]:
    if not roles:
        raise TypeError(f"{name}() needs at least one role")
    if not all(isinstance(role, str) for role in roles):
        raise TypeError(f"{name}() takes role names, like {name}(Role.ADMIN)")
    return tuple(str(role) for role in roles)


class MisusedDependency(inspect.Signature):
    """The signature of a function that is no dependency as it is: FastAPI reads its
    parameters when a route with ``Depends(func)`` is defined, and gets ``message`` as
    a ``TypeError`` there; ``help()`` still shows the real signature."""

    __slots__ = ("message", "text")

    def __init__(self, func: Callable[..., Any], message: str) -> None:
        super().__init__()
        self.text = str(inspect.signature(func))
        self.message = message

    @property
    def parameters(self) -> Any:
        raise TypeError(self.message)

    def __str__(self) -> str:
        return self.text

    def format(self, *, max_width: int | None = None) -> str:  # help() on Python 3.13
        return self.text


def find_connection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> HTTPConnection | Scope:
    values = (*args, *kwargs.values())
    for value in values:
        if isinstance(value, HTTPConnection):
            return value
    for value in values:  # a plain ASGI app: (scope, receive, send)
        if isinstance(value, dict) and value.get("type") in ("http", "websocket"):
            return value
    raise TypeError("a guarded endpoint needs a Request, WebSocket or ASGI scope argument")


def guard(func: Callable[P, R], roles: tuple[str, ...], checker: Check | None = None
          ) -> Callable[P, R]:
    def run_check(conn: HTTPConnection | Scope) -> None:
        if checker is None:
            check(conn, roles)
        else:
            checker(conn)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            run_check(find_connection(args, kwargs))
            return await func(*args, **kwargs)

        return cast(Callable[P, R], async_wrapper)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        run_check(find_connection(args, kwargs))
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


# Depends(require_role): the roles are missing; fail where the route is defined.
require_role.__signature__ = MisusedDependency(  # type: ignore[attr-defined]
    require_role, "Depends(require_role) needs the roles: Depends(require_role(Role.ADMIN)), or "
    "Annotated[SessionUser, RequireRole(Role.ADMIN)] from asgi_jwt_session.dependencies "
    "(CurrentUser for any signed-in user)")


@overload
def require_admin(conn: HTTPConnection | Scope, /) -> SessionUser: ...
@overload
def require_admin() -> Dependency: ...
@takes_connection
def require_admin(conn: HTTPConnection | Scope | None = None) -> SessionUser | Dependency:
    """``require_role`` for the highest role of the hierarchy (``ADMIN`` by default).

    ``require_admin()`` without a request returns a FastAPI dependency; so does
    ``require_admin`` itself: ``Depends(require_admin)`` and ``Depends(require_admin())``
    are the same.
    """
    if conn is not None:
        return check(conn, (roles_of(conn).highest,))

    async def dependency(conn: HTTPConnection) -> SessionUser:
        return check(conn, (roles_of(conn).highest,))

    return dependency


def requires_fresh_login(max_age: int = FRESH_LOGIN_AGE
                         ) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator for sensitive actions ("sudo mode"): the endpoint runs only when the
    signed-in user proved their credentials (signed in, or :func:`reauthenticate`)
    at most ``max_age`` seconds ago.

    Otherwise :class:`~asgi_jwt_session.errors.ReauthenticationRequired`: a browser is
    sent to the login URL with ``next=`` and ``reauth=1``, other requests get 401
    ``{"detail": ..., "reason": "reauthentication_required"}``. Nobody signed in: as
    :func:`requires_login`. Works on the same endpoints as :func:`requires_login`.
    """
    age = fresh_age(max_age)

    def decorator(func: Callable[P, R]) -> Callable[P, R]:
        return guard(func, (), functools.partial(check_fresh, max_age=age))

    return decorator


@overload
def require_fresh_login(conn: HTTPConnection | Scope, /, *, max_age: int = ...
                        ) -> SessionUser: ...
@overload
def require_fresh_login(*, max_age: int = ...) -> Dependency: ...
@takes_connection
def require_fresh_login(conn: HTTPConnection | Scope | None = None, *,
                        max_age: int = FRESH_LOGIN_AGE) -> SessionUser | Dependency:
    """``require_fresh_login(request, max_age=300)``: the signed-in :class:`SessionUser`
    when they proved their credentials at most ``max_age`` seconds ago; else raises
    (see :func:`requires_fresh_login`).

    ``require_fresh_login(max_age=300)`` without a request returns a FastAPI
    dependency: ``user: SessionUser = Depends(require_fresh_login(max_age=300))``
    (``Depends(require_fresh_login)``: the default ``max_age``).
    """
    age = fresh_age(max_age)
    if conn is not None:
        return check_fresh(conn, age)

    async def dependency(conn: HTTPConnection) -> SessionUser:
        return check_fresh(conn, age)

    return dependency
