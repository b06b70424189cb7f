"""Freshness: role changes and revocations that take effect without a new sign-in.

- :class:`Freshness` (``policy.py``): when a session is revalidated and what then;
  pass one to the middleware as ``freshness=``.
- :class:`VersionFeed` (``feed.py``): the in-process feed, and the :class:`Feed`
  protocol a cross-process feed implements (start/stop, newest(user)).
- ``ConnectedFeed`` (``connection.py``): the base of the cross-process feeds: one
  connection kept up by a background task, reconnecting with backoff.
- :class:`PostgresVersionFeed` (``postgres.py``): LISTEN/NOTIFY across processes
  (asyncio only).
- :class:`RedisVersionFeed` (``redis.py``): a Redis Stream across processes (asyncio
  only; imported when first used).
- :class:`SingleFlight` (``flight.py``): one load per user for concurrent requests.

Everything but the PostgreSQL and Redis feeds runs under asyncio and trio (anyio
primitives); under trio the two feeds refuse to start, and ``Freshness`` takes a user
loader, not the asyncio-only ``RoleStore`` (docs/architecture.md, "asyncio and trio").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from asgi_jwt_session.freshness.feed import Feed, VersionFeed
from asgi_jwt_session.freshness.flight import SingleFlight
from asgi_jwt_session.freshness.policy import (
    CheckedUser,
    Freshness,
    UserLoader,
    apply_actor,
    apply_user,
)
from asgi_jwt_session.freshness.postgres import PostgresVersionFeed

if TYPE_CHECKING:
    from asgi_jwt_session.freshness.redis import RedisVersionFeed

__all__ = [
    "CheckedUser",
    "Feed",
    "Freshness",
    "PostgresVersionFeed",
    "RedisVersionFeed",
    "SingleFlight",
    "UserLoader",
    "VersionFeed",
    "apply_actor",
    "apply_user",
]


def __getattr__(name: str) -> object:
    if name == "RedisVersionFeed":  # loaded on first use: most apps have no Redis
        from asgi_jwt_session.freshness.redis import RedisVersionFeed

        return RedisVersionFeed
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
