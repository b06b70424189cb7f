"""The revalidation policy: when a session is checked against the store, and what then.

A token carries ``ver`` (the user's session version when it was issued) and ``chk``
(when its role was last checked against the store). The middleware asks
:meth:`Freshness.is_stale` on every signed-in request: one dict lookup and two int
comparisons, no I/O. A session is stale when the feed knows a newer version for its
user than ``ver``, or when ``chk`` is ``revalidate_after`` seconds old. Only then
:meth:`Freshness.revalidate` loads the user, once per user for all concurrent requests
of a process (single flight), and applies :func:`apply_user`.

Under faults: a failed load marks the store unreachable. Meanwhile stale sessions are
served from their cookie (``on_store_error="keep"``) or signed out (``"signout"``),
without waiting; one stale request at a time probes the store, at most every
``retry_after`` seconds (one with "keep"; none with "signout", where every moment
the outage is believed too long costs someone their session). The outage ends for
everyone at the first sign that the database answers: a load that succeeds (a probe,
the refresh endpoint), a change the store commits, or the feed connecting again. So a
change the feed announces is applied within ``retry_after`` of the database answering
again, and no session is signed out for an outage that is over. See
docs/reliability.md.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio

from asgi_jwt_session.apply import CheckedUser, apply_actor, apply_user
from asgi_jwt_session.errors import StoreUnavailable, failure
from asgi_jwt_session.freshness.feed import DEFAULT_MAX_AGE, Feed, VersionFeed
from asgi_jwt_session.freshness.flight import SingleFlight
from asgi_jwt_session.session import Actor, Session
from asgi_jwt_session.store.base import Store

if TYPE_CHECKING:
    from starlette.types import Scope

    from asgi_jwt_session.registry import SessionRegistry

__all__ = ["CheckedUser", "Freshness", "StoreErrorPolicy", "UserLoader", "apply_actor",
           "apply_user"]

logger = logging.getLogger("asgi_jwt_session.freshness")

StoreErrorPolicy = Literal["keep", "signout"]

UserLoader = Callable[[str], Awaitable[Any]]
"""``async (user_id) -> user | None``: the user as the store has it now.

The user is an object with ``role``, ``session_version`` and optionally ``disabled``
and ``revoked_at`` (a :class:`~asgi_jwt_session.store.StoredUser` is one), or a
``(role, session_version)`` tuple; ``None`` when the user is gone. Raise
:class:`~asgi_jwt_session.errors.StoreUnavailable` when the database cannot be reached.
"""

# Failures of a load that mean "the database cannot be reached now", not a bug.
UNAVAILABLE = (StoreUnavailable, OSError, TimeoutError)
# Feed entries reach this much further back than revalidate_after, for clocks of other
# machines that run a little behind.
CLOCK_MARGIN = 60
DEFAULT_TIMEOUT = 5.0  # seconds a user load may take before the store counts as unreachable
DEFAULT_RETRY_AFTER = 1.0  # seconds between probes of an unreachable store ("keep")
MEMO_WINDOW = 30  # seconds a load is remembered when revalidate_after is None

@dataclass(frozen=True, slots=True)
class Loaded:
    user: CheckedUser | None
    loaded_at: int  # when it was read (the request's clock)
    seen: int  # the newest version known when it was read (store's or feed's)


class Freshness:
    """Role changes and revocations that take effect without a new sign-in.

    ``JWTSessionMiddleware(app, secret, freshness=Freshness(store, revalidate_after=60))``.

    - ``source``: a :class:`~asgi_jwt_session.store.Store` (its ``get_user`` loads
      users, and the feed watches its changes) or a :data:`UserLoader`.
    - ``revalidate_after``: seconds after ``chk`` at which a session is checked again
      (``None``: only when the feed says so).
    - ``feed``: the :class:`~asgi_jwt_session.freshness.feed.Feed` consulted on every
      request (start and stop it with the app's lifespan); without one the policy
      makes an in-process :class:`VersionFeed`. A feed made with ``max_age=None``
      keeps changes for ``revalidate_after`` plus a minute (the token lifetime when
      ``revalidate_after`` is ``None``); a feed's own ``max_age`` is kept.
    - ``on_store_error``: while the store cannot be reached, ``"keep"`` serves the
      current claims, ``"signout"`` signs out every session that needed the check.
    - ``retry_after``: seconds between probes of an unreachable store (one probe at a
      time; the other stale requests meanwhile get ``on_store_error`` at once).
      ``None``: 1 s with ``"keep"``, 0 with ``"signout"`` (probe with each stale
      request, so nobody is signed out once the database answers).
    - ``timeout``: seconds a load may take before it counts as unreachable.
    - ``memo_size``: users whose last load is remembered. A load is remembered for
      ``revalidate_after`` seconds, so a client that ignores cookies costs at most one
      query per window per process, or one per change the feed sees.
    - ``watch``: subscribe the feed to the store's changes (default).
    - ``registry``: a :class:`~asgi_jwt_session.registry.SessionRegistry`, to record
      each session at sign-in and renewal (see :meth:`issued`) and list and end them
      one by one.
    """

    def __init__(
        self,
        source: Store | UserLoader,
        *,
        revalidate_after: int | None = 300,
        feed: Feed | None = None,
        on_store_error: StoreErrorPolicy = "keep",
        retry_after: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        memo_size: int = 65536,
        watch: bool = True,
        registry: SessionRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if revalidate_after is not None and revalidate_after <= 0:
            raise ValueError("revalidate_after must be positive, or None")
        if on_store_error not in ("keep", "signout"):
            raise ValueError("on_store_error must be 'keep' or 'signout'")
        if retry_after is None:
            retry_after = DEFAULT_RETRY_AFTER if on_store_error == "keep" else 0.0
        if retry_after < 0 or timeout <= 0 or memo_size < 0:
            raise ValueError("retry_after, timeout and memo_size must not be negative")
        store: Store | None = None
        if callable(getattr(source, "get_user", None)):
            store = source  # type: ignore[assignment]
            self.load_user: UserLoader = store.get_user  # type: ignore[union-attr]
        elif callable(source):
            self.load_user = source
        else:
            raise TypeError("Freshness needs a store or an async user loader")
        self.store = store
        self.registry = registry
        self.revalidate_after = revalidate_after
        if feed is None:
            feed = VersionFeed()
        keep_for = getattr(feed, "keep_for", None)
        if callable(keep_for):
            keep_for(revalidate_after + CLOCK_MARGIN if revalidate_after is not None
                     else DEFAULT_MAX_AGE)
        self.feed = feed
        self.newest = feed.newest  # the hot path's one lookup
        if store is not None and watch:
            feed.watch(store)
        if store is not None:
            store.on_change.append(self.on_store_change)  # a commit: the database answers
        on_connect = getattr(feed, "on_connect", None)
        if isinstance(on_connect, list) and getattr(feed, "in_store_database", True):
            on_connect.append(self.answered)  # the feed reached the database again
        self.on_store_error = on_store_error
        self.retry_after = retry_after
        self.timeout = timeout
        self.clock = clock
        self.memo: OrderedDict[str, Loaded] = OrderedDict()
        self.memo_size = memo_size
        self.memo_window = revalidate_after if revalidate_after is not None else MEMO_WINDOW
        self.flight: SingleFlight[Loaded] = SingleFlight(self.load)
        self.failed_at: float | None = None  # the last failed load, while unreachable
        self.probing = False  # a load started while unreachable is running
        self.signed_out = 0  # sessions signed out because the store was unreachable

    @property
    def queries(self) -> int:
        """How many loads this policy has started."""
        return self.flight.calls

    @property
    def reachable(self) -> bool:
        """False from a failed load until the next one that succeeds."""
        return self.failed_at is None

    def is_stale(self, session: Session, now: int) -> bool:
        """True when ``session`` must be revalidated before the request goes on (also
        when the feed knows a newer version of the impersonator, if any)."""
        user = session.user
        if user is None:
            return False
        newest = self.newest(user.id)
        if newest is not None:
            version = session.version
            if version is None or newest > version:
                return True
        actor = session.actor
        if actor is not None:
            newest = self.newest(actor.user.id)
            if newest is not None and (actor.version is None or newest > actor.version):
                return True
        after = self.revalidate_after
        if after is None:
            return False
        checked = session.checked_at
        return checked is None or now - checked >= after

    async def revalidate(self, session: Session, now: int) -> None:
        """Load the user (shared, remembered) and apply it to ``session``, and the
        impersonator too during an impersonation; while the store is unreachable,
        apply ``on_store_error`` instead. Never raises for an outage."""
        user = session.user
        if user is None:
            return
        loaded = await self.lookup(user.id, now)
        if loaded is None:
            self.store_down(session)
            return
        apply_user(session, loaded.user, loaded.loaded_at)
        actor = session.actor
        if actor is not None and session.user is not None:
            loaded = await self.lookup(actor.user.id, now)
            if loaded is None:
                self.store_down(session)
                return
            apply_actor(session, loaded.user)

    async def lookup(self, user_id: str, now: int) -> Loaded | None:
        """The user as last loaded, or loaded now (shared); ``None`` while the store is
        unreachable."""
        newest = self.newest(user_id)
        loaded = self.memo.get(user_id)
        if (loaded is None or now - loaded.loaded_at >= self.memo_window
                or (newest is not None and newest > loaded.seen)):
            failed_at = self.failed_at
            if failed_at is not None and (
                    self.probing or self.clock() - failed_at < self.retry_after):
                return None  # a probe failed a moment ago, or is running
            try:
                loaded = await self.flight(user_id, now)
            except UNAVAILABLE:
                return None
        return loaded

    async def refresh(self, session: Session, now: int) -> None:
        """Re-read the user now and apply it (the refresh endpoint); raises
        :class:`~asgi_jwt_session.errors.StoreUnavailable` when the store cannot be
        reached or does not answer within ``timeout``."""
        user = session.user
        if user is None:
            return
        actor = session.actor
        try:
            loaded = await self.flight(user.id, now)
            acting = await self.flight(actor.user.id, now) if actor is not None else None
        except UNAVAILABLE as exc:
            raise StoreUnavailable(f"role store unavailable: {exc!r}") from exc
        apply_user(session, loaded.user, loaded.loaded_at)
        if acting is not None:
            apply_actor(session, acting.user)

    async def load(self, user_id: str, now: int) -> Loaded:
        newest = self.newest(user_id)  # before the read: a later change reloads
        probe = self.failed_at is not None
        self.probing = self.probing or probe
        try:
            with anyio.fail_after(self.timeout):
                user = CheckedUser.coerce(await self.load_user(user_id))
        except UNAVAILABLE as exc:
            self.failed(exc)
            raise
        finally:
            if probe:
                self.probing = False
        self.answered()
        seen = max(newest or 0, user.session_version if user is not None else 0)
        loaded = Loaded(user, now, seen)
        memo = self.memo
        memo[user_id] = loaded
        memo.move_to_end(user_id)
        while memo:
            oldest = next(iter(memo.values()))
            if len(memo) <= self.memo_size and now - oldest.loaded_at < self.memo_window:
                break
            memo.popitem(last=False)
        return loaded

    def answered(self) -> None:
        """The database answers: end the outage, if there is one (and tell a feed that
        is still waiting to reconnect)."""
        if self.failed_at is not None:
            self.failed_at = None
            logger.warning("role store reachable again; revalidating sessions")
            wake = getattr(self.feed, "wake", None)
            if callable(wake):
                wake()

    async def issued(self, scope: Scope, session: Session, first: bool) -> None:
        """The middleware issued a token for ``session``: a new session id (``first``)
        or a renewal. The session registry, if any, records it; never raises."""
        if self.registry is not None:
            await self.registry.issued(scope, session, first)

    async def ended(self, scope: Scope, user_id: str, session_id: str | None,
                    actor: Actor | None) -> None:
        """The app signed the session out: the session registry, if any, revokes it
        (and the impersonator's own session, during an impersonation); never raises."""
        if self.registry is not None:
            await self.registry.ended(user_id, session_id, actor)

    def on_store_change(self, user: object) -> None:
        """A ``Store.on_change`` listener: a committed change means the database answers."""
        self.answered()

    def failed(self, exc: BaseException) -> None:
        if self.failed_at is None:  # logged once per outage
            reason = failure(exc, self.timeout)
            probing = (f"probing every {self.retry_after}s" if self.retry_after
                       else "probing with the next request that needs a check")
            logger.warning("role store unreachable, %s sessions that need a check; %s: %s",
                           "keeping" if self.on_store_error == "keep" else "signing out",
                           probing, reason)
        self.failed_at = self.clock()

    def store_down(self, session: Session) -> None:
        if self.on_store_error == "signout":
            self.signed_out += 1
            session.logout()
