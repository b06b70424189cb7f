"""Encrypted JWT cookie sessions for Starlette, FastAPI and any ASGI app."""

from asgi_jwt_session.config import SessionConfig
from asgi_jwt_session.cookies import SessionTooLarge
from asgi_jwt_session.csrf import CSRFError, csrf_token, set_csrf_cookie, verify_csrf
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import PostgresVersionFeed, VersionFeed
from asgi_jwt_session.guards import (
    AuthError,
    NotAuthenticated,
    PermissionDenied,
    handle_auth_error,
    require_admin,
    require_role,
    requires_login,
    requires_role,
    safe_next,
)
from asgi_jwt_session.keys import Keyring
from asgi_jwt_session.middleware import JWTSessionMiddleware
from asgi_jwt_session.roles import Role, RoleHierarchy
from asgi_jwt_session.session import Session, SessionUser, auth, login, logout
from asgi_jwt_session.store import (
    RoleStore,
    StoredUser,
    StoreUnavailable,
    revoke_sessions,
    update_user_role,
)
from asgi_jwt_session.tokens import ExpiredToken, InvalidToken, TokenCodec, UnknownKey

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "CSRFError",
    "ExpiredToken",
    "InvalidToken",
    "JWTSessionMiddleware",
    "Keyring",
    "NotAuthenticated",
    "PermissionDenied",
    "PostgresVersionFeed",
    "Role",
    "RoleHierarchy",
    "RoleStore",
    "Session",
    "SessionConfig",
    "SessionTooLarge",
    "SessionUser",
    "StoreUnavailable",
    "StoredUser",
    "TokenCodec",
    "UnknownKey",
    "VersionFeed",
    "auth",
    "csrf_token",
    "handle_auth_error",
    "login",
    "logout",
    "require_admin",
    "require_role",
    "requires_login",
    "requires_role",
    "revoke_sessions",
    "safe_next",
    "session_routes",
    "set_csrf_cookie",
    "update_user_role",
    "verify_csrf",
]
