"""What a role store is: the :class:`Store` protocol and the :class:`StoredUser` it returns.

A store keeps each user's role and session version (and optionally ``disabled`` and
``revoked_at``). Freshness, the refresh endpoint and the demo use only these methods,
so a new backend is one module that implements them; the ``databases`` one
(:class:`~asgi_jwt_session.store.RoleStore`) is the default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["Listener", "Observable", "Store", "StoredUser", "revoke_sessions", "update_user_role"]


@dataclass(frozen=True)
class StoredUser:
    """A user row as the store sees it."""

    id: str
    email: str | None
    role: str
    session_version: int
    updated_at: datetime  # aware, UTC
    disabled: bool = False
    revoked_at: datetime | None = None  # aware, UTC: the last `revoke_sessions()`


Listener = Callable[[StoredUser], Awaitable[None] | None]
"""Called with the committed user after every change a store makes."""


class Observable(Protocol):
    """Something that calls ``on_change`` listeners after each change it makes."""

    on_change: list[Listener]


class Store(Observable, Protocol):
    """A role store.

    Every write bumps the user's ``session_version`` and then calls each
    ``on_change`` listener, in order, with the committed user (awaiting what it
    returns). Reads and writes raise :class:`~asgi_jwt_session.errors.StoreUnavailable`
    when the database cannot be reached; writes raise
    :class:`~asgi_jwt_session.errors.UnknownUser` for an unknown id and
    :class:`~asgi_jwt_session.errors.UnknownRole` for a role outside the store's
    hierarchy.
    """

    async def get_user(self, user_id: str) -> StoredUser | None:
        """The user with this id, or ``None``."""

    async def create_user(self, user_id: str, role: str, *, email: str | None = None
                          ) -> StoredUser:
        """Insert a user (session version 1); a taken id raises ``ValueError``."""

    async def update_user_role(self, user_id: str, role: str) -> StoredUser:
        """Set the role and bump the session version."""

    async def revoke_sessions(self, user_id: str) -> StoredUser:
        """End every session signed in until now (sets ``revoked_at``)."""

    async def set_disabled(self, user_id: str, disabled: bool) -> StoredUser:
        """Disable or re-enable a user."""


async def update_user_role(store: Store, user_id: str, role: str) -> StoredUser:
    """Set a user's role and bump their session version, so every session sees it."""
    return await store.update_user_role(user_id, role)


async def revoke_sessions(store: Store, user_id: str) -> StoredUser:
    """Sign a user out everywhere: every session signed in until now ends."""
    return await store.revoke_sessions(user_id)
