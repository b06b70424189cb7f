"""Every exception the package raises on purpose, in one hierarchy.

- :class:`AuthError` and its subclasses are answers: the middleware (or
  :data:`~asgi_jwt_session.responses.exception_handlers`) turns them into a login
  redirect, 401, 403 or a websocket close.
- :class:`InvalidToken` and its subclasses mean "treat as no session"; the middleware
  never lets one escape.
- :class:`SessionTooLarge` is raised when a session cannot fit in its cookie budget.
- :class:`StoreUnavailable`, :class:`UnknownUser` and :class:`UnknownRole` come from
  a role store.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "CSRFError",
    "ExpiredToken",
    "InvalidToken",
    "NotAuthenticated",
    "PermissionDenied",
    "SessionError",
    "SessionTooLarge",
    "StoreUnavailable",
    "UnknownKey",
    "UnknownRole",
    "UnknownUser",
]


class SessionError(Exception):
    """Base of every exception this package raises on purpose."""


class AuthError(SessionError):
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


class CSRFError(PermissionDenied):
    """A POST failed the CSRF check: 403, like any :class:`PermissionDenied`."""

    detail = "CSRF check failed"


class InvalidToken(SessionError, ValueError):
    """A token that must be treated as no session. The message says why."""


class ExpiredToken(InvalidToken):
    """The token was valid once but its ``exp`` has passed."""


class UnknownKey(InvalidToken):
    """The token names a key (``kid``) that this keyring does not hold."""


class SessionTooLarge(SessionError, ValueError):
    """The encoded session would not fit in the cookie budget."""


class StoreUnavailable(SessionError, RuntimeError):
    """The database cannot be reached (answer 503, try again later)."""


class UnknownUser(SessionError, LookupError):
    """No user with this id."""


class UnknownRole(SessionError, ValueError):
    """The role is not in the store's role hierarchy."""
