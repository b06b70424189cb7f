"""Starlette's ``request.user`` and ``request.auth`` over the session.

The middleware fills ``scope["user"]`` and ``scope["auth"]`` with these, so
Starlette's ``@requires("authenticated")`` / ``@requires("role:ADMIN")`` work.
"""

from __future__ import annotations

from starlette.authentication import AuthCredentials, BaseUser

from asgi_jwt_session.roles import RoleHierarchy
from asgi_jwt_session.session import Session, SessionUser

__all__ = ["SessionAuth", "SessionAuthUser", "SessionCredentials"]


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


class SessionAuth(SessionAuthUser, SessionCredentials):
    """Both ``request.user`` and ``request.auth``: one object a request, built only
    from what the middleware already has."""

    __slots__ = ()

    def __init__(self, session: Session, roles: RoleHierarchy) -> None:
        self.session = session
        self.roles = roles
