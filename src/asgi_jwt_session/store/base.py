"""What a role store is: the :class:`Store` protocol and the :class:`StoredUser` it returns.

A store keeps each user's role and session version (and optionally ``disabled`` and
``revoked_at``). Freshness, the refresh endpoint and the demo use only these methods,
so a new backend is one module that implements them; the ``databases`` one
(:class:`~asgi_jwt_session.store.RoleStore`) is the default.

A store that also keeps the session registry (:mod:`asgi_jwt_session.registry`)
implements :class:`SessionStore` and returns each user's revoked session ids with
the user (:attr:`StoredUser.revoked_sessions`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["ChallengeStore", "Listener", "Observable", "SessionStore", "Store", "StoredSession",
           "StoredUser", "revoke_sessions", "update_user_role"]


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
    # The session registry's revoked session ids of this user, as read with the user;
    # empty without a registry. Revalidation signs these sessions out. A store may leave
    # out the ids of sessions that ``revoked_at`` ends anyway (signed in before it).
    revoked_sessions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StoredSession:
    """A row of the session registry: one signed-in session (times aware, UTC).

    ``id`` is the session id (the token's ``sid``, else its ``jti``); ``created_at``
    the sign-in, ``renewed_at`` the last token issued for it, ``expires_at`` that
    token's expiry and ``ends_at`` the session's absolute end (sign-in plus its
    lifetime), after which the row may be deleted. ``user_agent`` and ``client`` are
    what the app chose to record (``None``: nothing). ``device_bound``: its token is
    bound to the browser's device
    key (DBSC, see :mod:`asgi_jwt_session.dbsc`).
    """

    id: str
    user_id: str
    created_at: datetime
    renewed_at: datetime
    expires_at: datetime
    ends_at: datetime
    user_agent: str | None = None
    client: str | None = None
    revoked_at: datetime | None = None
    device_bound: bool = False


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


class SessionStore(Store, Protocol):
    """A role store that keeps the session registry too.

    Its ``get_user`` fills :attr:`StoredUser.revoked_sessions`; a revocation bumps the
    user's session version (and calls ``on_change``), so version feeds and
    revalidation notice it. The registry only ever takes sessions away: a row never
    makes a token valid that its signature, expiry or the user row refuse.
    """

    async def record_session(self, session: StoredSession, *, first: bool) -> None:
        """Insert the row, or update the renewal times (and device) of the row with
        this id and user; a revoked row stays revoked. ``first`` (a new session id):
        also delete this user's rows past their ``ends_at``."""

    async def list_sessions(self, user_id: str, *, limit: int = 1000,
                            before: tuple[datetime, str] | None = None
                            ) -> list[StoredSession]:
        """The user's sessions neither revoked nor expired, newest renewal first (then
        by id, descending): at most ``limit``, and only those after ``before`` (the
        ``(renewed_at, id)`` of the previous page's last row) when given."""

    async def revoke_session(self, session_id: str, *, user_id: str | None = None) -> bool:
        """Revoke one session (only if it is ``user_id``'s, when given); ``False``
        when no such row."""

    async def revoke_other_sessions(self, user_id: str, keep: str) -> StoredUser:
        """End every session of the user but ``keep``: the rows are revoked, and
        ``revoked_at`` set to now as :meth:`Store.revoke_sessions` does (the caller
        moves the kept session past it)."""

    async def revoke_all_sessions(self) -> int:
        """End every session of every user (``revoked_at`` of each user set to now);
        returns the number of users."""


class ChallengeStore(Protocol):
    """A store that remembers the DBSC challenges answered, so that each serves once
    on every process (:mod:`asgi_jwt_session.dbsc`, with a session registry).
    Optional: without it a challenge serves once per process."""

    async def use_challenge(self, challenge: str, expires_at: datetime) -> bool:
        """Record ``challenge`` as used, keeping it at least until ``expires_at``
        (aware, UTC; it is refused by its age after that); ``False`` when it was used
        before, on any process. One statement."""


def kept_sign_in_ms(revoked_at: datetime) -> int:
    """The sign-in time (epoch milliseconds) of the session a revocation of the others
    at ``revoked_at`` keeps: the first millisecond after it."""
    return math.floor(revoked_at.timestamp() * 1000) + 1


async def update_user_role(store: Store, user_id: str, role: str) -> StoredUser:
    """Set a user's role and bump their session version, so every session sees it."""
    return await store.update_user_role(user_id, role)


async def revoke_sessions(store: Store, user_id: str) -> StoredUser:
    """Sign a user out everywhere: every session signed in until now ends."""
    return await store.revoke_sessions(user_id)
