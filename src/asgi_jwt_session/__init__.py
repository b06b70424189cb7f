"""Encrypted JWT cookie sessions for Starlette, FastAPI and any ASGI app.

The top level holds the core: the middleware, its options, the session, the guards
and the errors users catch. Features live in their modules and are imported from
there: ``asgi_jwt_session.freshness`` (``Freshness``, version feeds),
``asgi_jwt_session.store`` (``RoleStore``), ``asgi_jwt_session.endpoints``
(``session_routes``), ``asgi_jwt_session.authjs`` (``AuthJSFormat``),
``asgi_jwt_session.impersonation`` (``impersonate``, ``stop_impersonating``),
``asgi_jwt_session.csrf`` and ``asgi_jwt_session.responses``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.errors import (
    AuthError,
    CSRFError,
    InvalidToken,
    NotAuthenticated,
    PermissionDenied,
    ReauthenticationRequired,
    SessionTooLarge,
    StoreUnavailable,
    UnknownRole,
    UnknownUser,
)
from asgi_jwt_session.guards import (
    require_admin,
    require_fresh_login,
    require_role,
    requires_fresh_login,
    requires_login,
    requires_role,
)
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.roles import Role, RoleHierarchy
from asgi_jwt_session.session import Session, SessionUser, auth, login, logout, reauthenticate
from asgi_jwt_session.store.base import revoke_sessions, update_user_role

__version__ = "0.2.0"

__all__ = [
    "AuthError",
    "CSRFError",
    "InvalidToken",
    "JWTSessionMiddleware",
    "Keyring",
    "NotAuthenticated",
    "PermissionDenied",
    "ReauthenticationRequired",
    "Role",
    "RoleHierarchy",
    "Session",
    "SessionConfig",
    "SessionTooLarge",
    "SessionUser",
    "StoreUnavailable",
    "UnknownRole",
    "UnknownUser",
    "auth",
    "login",
    "logout",
    "reauthenticate",
    "require_admin",
    "require_fresh_login",
    "require_role",
    "requires_fresh_login",
    "requires_login",
    "requires_role",
    "revoke_sessions",
    "update_user_role",
]

# Names 0.1 exported from the top level; they load their module on first use.
MOVED = {
    "ExpiredToken": "asgi_jwt_session.errors",
    "UnknownKey": "asgi_jwt_session.errors",
    "TokenCodec": "asgi_jwt_session.tokens",
    "RoleStore": "asgi_jwt_session.store",
    "StoredUser": "asgi_jwt_session.store",
    "VersionFeed": "asgi_jwt_session.freshness",
    "PostgresVersionFeed": "asgi_jwt_session.freshness",
    "session_routes": "asgi_jwt_session.endpoints",
    "csrf_token": "asgi_jwt_session.csrf",
    "set_csrf_cookie": "asgi_jwt_session.csrf",
    "verify_csrf": "asgi_jwt_session.csrf",
    "safe_next": "asgi_jwt_session.responses",
    "handle_auth_error": "asgi_jwt_session.responses",
}


def __getattr__(name: str) -> Any:
    module = MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module), name)
