"""Role stores: the :class:`Store` protocol, and :class:`RoleStore` on ``databases``.

``RoleStore`` (SQLite embedded, PostgreSQL for real) is imported on first use, so
importing this package loads no database stack. It needs the ``store`` extra
(``pip install 'asgi-jwt-session[store]'``; ``[postgres]`` adds asyncpg).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asgi_jwt_session.errors import StoreUnavailable, UnknownRole, UnknownUser
from asgi_jwt_session.store.base import (
    ChallengeStore,
    Listener,
    SessionStore,
    Store,
    StoredSession,
    StoredUser,
    revoke_sessions,
    update_user_role,
)

if TYPE_CHECKING:
    from asgi_jwt_session.store.databases import RoleStore

__all__ = [
    "ChallengeStore",
    "Listener",
    "RoleStore",
    "SessionStore",
    "Store",
    "StoreUnavailable",
    "StoredSession",
    "StoredUser",
    "UnknownRole",
    "UnknownUser",
    "revoke_sessions",
    "update_user_role",
]


STORE_EXTRA = ("databases", "sqlalchemy")


def __getattr__(name: str) -> Any:
    if name == "RoleStore":
        try:
            from asgi_jwt_session.store.databases import RoleStore
        except ModuleNotFoundError as exc:
            if exc.name not in STORE_EXTRA:
                raise
            raise ImportError(
                f"RoleStore needs {exc.name}, which is not installed: "
                "pip install 'asgi-jwt-session[store]' (or [postgres] for PostgreSQL)",
                name=exc.name) from exc
        return RoleStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
