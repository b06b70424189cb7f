"""Every exception the package raises on purpose, in one hierarchy.

- :class:`AuthError` and its subclasses are answers: the middleware (or
  :data:`~asgi_jwt_session.responses.exception_handlers`) turns them into a login
  redirect, 401, 403, 400 (a refused impersonation) or a websocket close.
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
    "ImpersonationDenied",
    "ImpersonationError",
    "InvalidToken",
    "NotAuthenticated",
    "PermissionDenied",
    "ReauthenticationRequired",
    "SessionError",
    "SessionTooLarge",
    "StoreUnavailable",
    "UnknownKey",
    "UnknownRole",
    "UnknownUser",
    "describe",
    "failure",
]


class SessionError(Exception):
    """Base of every exception this package raises on purpose."""


class AuthError(SessionError):
    """Base of the guard exceptions; the middleware turns one into a response.

    ``reason``, when set, is a machine-readable word the JSON answer carries beside
    ``detail`` (``{"detail": ..., "reason": "reauthentication_required"}``).
    """

    status_code = 401
    close_code = 4401
    detail = "Not authenticated"
    reason: str | None = None

    def __init__(self, detail: str | None = None, *, reason: str | None = None) -> None:
        if detail is not None:
            self.detail = detail
        if reason is not None:
            self.reason = reason
        super().__init__(self.detail)


class NotAuthenticated(AuthError):
    """Nobody is signed in: a redirect to the login page for browsers, else 401."""


class ReauthenticationRequired(NotAuthenticated):
    """Signed in, but not recently enough for this action ("sudo mode"): browsers are
    sent to the login page with ``reauth=1``; other requests get 401 with
    ``reason: "reauthentication_required"``."""

    detail = "Re-authentication required"
    reason = "reauthentication_required"


class PermissionDenied(AuthError):
    """Signed in, but without a role that is needed: 403 (websockets: 4403)."""

    status_code = 403
    close_code = 4403
    detail = "Permission denied"


class CSRFError(PermissionDenied):
    """A POST failed the CSRF check: 403, like any :class:`PermissionDenied`."""

    detail = "CSRF check failed"


class ImpersonationError(AuthError):
    """An impersonation that cannot start or stop: an unknown or disabled user, oneself,
    already impersonating, not impersonating. 400 (websockets: 4400), with a
    ``reason``."""

    status_code = 400
    close_code = 4400
    detail = "Cannot impersonate"
    reason = "impersonation_refused"


class ImpersonationDenied(ImpersonationError, PermissionDenied):
    """Impersonating this user is not allowed: their role is above the impersonator's.
    403 (websockets: 4403)."""

    status_code = 403
    close_code = 4403
    detail = "Not allowed to impersonate this user"
    reason = "role_above_actor"


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


def describe(exc: BaseException) -> str:
    """``ExceptionType: message`` for a log line, never empty (``TimeoutError()`` has
    no message)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else repr(exc)


def failure(exc: BaseException, timeout: float) -> str:
    """Why a call given ``timeout`` seconds failed, for a log line or an error: ``no
    answer within ...`` when it timed out, else :func:`describe`."""
    return f"no answer within {timeout}s" if isinstance(exc, TimeoutError) else describe(exc)
