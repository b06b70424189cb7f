"""Freshness: role changes and revocations that take effect without a new sign-in.

- :class:`Freshness` (``policy.py``): when a session is revalidated and what then;
  pass one to the middleware as ``freshness=``.
- :class:`VersionFeed` (``feed.py``): the in-process feed, and the :class:`Feed`
  protocol a cross-process feed implements (start/stop, newest(user)).
- :class:`PostgresVersionFeed` (``postgres.py``): LISTEN/NOTIFY across processes
  (asyncio only).
- :class:`SingleFlight` (``flight.py``): one load per user for concurrent requests.

Everything but the PostgreSQL feed runs under asyncio and trio (anyio primitives).
"""

from __future__ import annotations

from asgi_jwt_session.freshness.feed import Feed, VersionFeed
from asgi_jwt_session.freshness.flight import SingleFlight
from asgi_jwt_session.freshness.policy import (
    CheckedUser,
    Freshness,
    UserLoader,
    apply_user,
)
from asgi_jwt_session.freshness.postgres import PostgresVersionFeed

__all__ = [
    "CheckedUser",
    "Feed",
    "Freshness",
    "PostgresVersionFeed",
    "SingleFlight",
    "UserLoader",
    "VersionFeed",
    "apply_user",
]
