"""Version feeds: who has a newer session version than their cookie says.

A feed maps user ids to the newest session version this process knows. The
:class:`Feed` protocol is what :class:`~asgi_jwt_session.freshness.Freshness` needs of
one; :class:`VersionFeed` is the in-process implementation, and the base of the
cross-process ones (:class:`~asgi_jwt_session.freshness.PostgresVersionFeed`,
:class:`~asgi_jwt_session.freshness.RedisVersionFeed`, through
:class:`~asgi_jwt_session.freshness.connection.ConnectedFeed`).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Protocol, Self

from asgi_jwt_session.store.base import Observable, StoredUser

__all__ = ["DEFAULT_MAX_AGE", "Feed", "VersionFeed"]

DEFAULT_MAX_AGE = 30 * 24 * 60 * 60  # a feed's, when nobody chose: the default token lifetime
PRUNE_INTERVAL = 1.0  # seconds: lookups check for expired entries at most this often


class Feed(Protocol):
    """What a freshness policy needs of a version feed."""

    def newest(self, user_id: str) -> int | None:
        """The newest session version known for ``user_id`` (no I/O), or ``None``."""

    def publish(self, user_id: str, version: int) -> None:
        """Record that ``user_id``'s session version is now ``version``."""

    def watch(self, store: Observable) -> None:
        """Publish every change ``store`` makes."""

    async def start(self) -> None:
        """Begin receiving changes (connect, catch up); return even if that fails."""

    async def stop(self) -> None:
        """Stop receiving changes and release connections."""


class VersionFeed:
    """An in-process map of user id to the newest session version this process knows.

    ``publish(user_id, version)`` records a change (a smaller version than the one
    known is ignored); ``newest(user_id)`` is one dict lookup. Entries are dropped
    ``max_age`` seconds after they were published (checked on lookups at most once a
    second, and on every publish), so memory is bounded by the changes of one
    ``max_age``, published or not since.

    ``max_age=None`` means "as long as the policies using the feed need": a
    :class:`~asgi_jwt_session.freshness.Freshness` makes it its ``revalidate_after``
    plus a minute (older changes are caught by revalidation anyway), the token
    lifetime (30 days) for a policy without ``revalidate_after``, and 30 days when no
    policy uses it. A number is kept as it is. :meth:`watch` wires the feed to a
    store's ``on_change``.
    """

    def __init__(self, max_age: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_age: float = DEFAULT_MAX_AGE if max_age is None else max_age
        self.max_age_given = max_age is not None
        self.needed: float | None = None  # the longest max_age a policy asked for
        self.clock = clock
        self.versions: dict[str, int] = {}
        self.published: OrderedDict[str, float] = OrderedDict()
        self.prune_at = math.inf  # when the oldest entry expires (at most once a second)

    def keep_for(self, seconds: float) -> None:
        """A policy using this feed needs changes for ``seconds``: with ``max_age=None``
        the feed keeps the longest any policy asked for; a given ``max_age`` stays."""
        if self.max_age_given or seconds <= 0:
            return
        self.needed = seconds if self.needed is None else max(self.needed, seconds)
        self.max_age = self.needed
        self.prune_at = -math.inf  # recompute on the next lookup

    def publish(self, user_id: str, version: int) -> None:
        """Record that ``user_id``'s session version is now ``version``."""
        known = self.versions.get(user_id)
        if known is not None and known >= version:
            return
        now = self.clock()
        self.versions[user_id] = version
        self.published[user_id] = now
        self.published.move_to_end(user_id)
        self.prune(now)

    def prune(self, now: float | None = None) -> None:
        """Drop entries published more than ``max_age`` seconds ago."""
        if now is None:
            now = self.clock()
        horizon = now - self.max_age
        published = self.published
        while published:
            user_id, at = next(iter(published.items()))
            if at >= horizon:
                # Look again when this one expires, but not sooner than in a second.
                self.prune_at = max(at + self.max_age, now + PRUNE_INTERVAL)
                return
            del published[user_id]
            del self.versions[user_id]
        self.prune_at = math.inf

    def newest(self, user_id: str) -> int | None:
        """The newest session version published for ``user_id``, or ``None``."""
        if self.published and self.clock() >= self.prune_at:
            self.prune()
        return self.versions.get(user_id)

    def __len__(self) -> int:
        self.prune()
        return len(self.versions)

    async def start(self) -> None:
        """Nothing to start in process."""

    async def stop(self) -> None:
        """Nothing to stop in process."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.stop()

    def watch(self, store: Observable) -> None:
        """Publish every change ``store`` makes (role update, revocation, disabling)."""
        if self.on_change not in store.on_change:
            store.on_change.append(self.on_change)

    def on_change(self, user: StoredUser) -> Awaitable[None] | None:
        """A ``RoleStore.on_change`` listener."""
        self.publish(user.id, user.session_version)
        return None
