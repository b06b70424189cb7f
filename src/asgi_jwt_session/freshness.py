"""Freshness: role changes and revocations that take effect without a new sign-in.

A token carries ``ver`` (the user's session version when it was issued) and ``chk``
(when its role was last checked against the store). The middleware asks
:meth:`Freshness.is_stale` on every signed-in request, which costs one dict lookup and
two int comparisons, no I/O. A session is stale when the :class:`VersionFeed` knows a
newer version for its user than ``ver``, or when ``chk`` is ``revalidate_after``
seconds old. Only then :meth:`Freshness.revalidate` loads the user, once per user for
all concurrent requests of a process (single flight), and applies :func:`apply_user`.

The version only says *that* something changed. What changed is read from the user:
a session ends when the user is gone or disabled, or when it was signed in at or
before the user's ``revoked_at`` (``revoke_sessions()``); otherwise it adopts the
stored role and version, however many changes it missed.

Everything here runs under asyncio and trio (anyio primitives), except
:class:`PostgresVersionFeed`, which wraps asyncpg and is asyncio-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import orjson

from asgi_jwt_session.session import Session
from asgi_jwt_session.store import StoreUnavailable

if TYPE_CHECKING:
    from asgi_jwt_session.config import SessionConfig
    from asgi_jwt_session.store import RoleStore, StoredUser

__all__ = [
    "CheckedUser",
    "Freshness",
    "PostgresVersionFeed",
    "SingleFlight",
    "UserLoader",
    "VersionFeed",
    "apply_user",
]

logger = logging.getLogger("asgi_jwt_session.freshness")

StoreErrorPolicy = Literal["keep", "signout"]

UserLoader = Callable[[str], Awaitable[Any]]
"""``async (user_id) -> user | None``: the user as the store has it now.

The user is an object with ``role``, ``session_version`` and optionally ``disabled``
and ``revoked_at`` (a :class:`~asgi_jwt_session.store.StoredUser` is one), or a
``(role, session_version)`` tuple; ``None`` when the user is gone. Raise
:class:`~asgi_jwt_session.store.StoreUnavailable` when the database cannot be reached.
"""

# Failures of a load that mean "the database cannot be reached now", not a bug.
UNAVAILABLE = (StoreUnavailable, OSError, TimeoutError)
# Feed entries and catch-up reach this much further back than revalidate_after, for
# clocks of other machines that run a little behind.
CLOCK_MARGIN = 60
DEFAULT_MAX_AGE = 30 * 24 * 60 * 60  # a feed's, when nobody chose: the default token lifetime
DEFAULT_TIMEOUT = 5.0  # seconds a user load may take before the store counts as unreachable


def epoch_seconds(value: datetime | float | None) -> int | None:
    """``revoked_at`` as whole epoch seconds: from a datetime (naive means UTC) or a
    number; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return math.floor(value.timestamp())
    return math.floor(value)


@dataclass(frozen=True, slots=True)
class CheckedUser:
    """What revalidation needs of a user: role, session version, disabled, and when
    their sessions were last revoked (epoch seconds, ``None``: never)."""

    role: str
    session_version: int
    disabled: bool = False
    revoked_at: int | None = None

    @classmethod
    def coerce(cls, found: Any) -> CheckedUser | None:
        """Normalize what a :data:`UserLoader` returned."""
        if found is None or isinstance(found, CheckedUser):
            return found
        if isinstance(found, tuple):
            role, version = found
            return cls(str(role), int(version))
        return cls(str(found.role), int(found.session_version),
                   bool(getattr(found, "disabled", False)),
                   epoch_seconds(getattr(found, "revoked_at", None)))


def apply_user(session: Session, user: CheckedUser | None, checked_at: int) -> None:
    """Bring a signed-in ``session`` up to date with ``user`` as read at ``checked_at``.

    Signs out when the user is gone or disabled, when the session was signed in at or
    before the user's ``revoked_at``, and when the session's version is newer than the
    store's. Otherwise the stored role and version are adopted, however many changes
    the session missed, and the session is marked modified (re-issued) only when its
    role, version or ``chk`` changed.
    """
    current = session.user
    if current is None:
        return
    if user is None or user.disabled:
        session.logout()
        return
    # Whole seconds on both sides: a sign-in in the same second as the revocation
    # cannot be told from one just before it, so it is signed out too (the safe error).
    if user.revoked_at is not None and (session.auth_time or 0) <= user.revoked_at:
        session.logout()
        return
    version, stored = session.version, user.session_version
    if version is not None and version > stored:
        # Versions only grow, so the store has gone back (a restored backup, a user
        # deleted and created again): revocations after that point are lost with it.
        session.logout()
        return
    if version != stored or current.role != user.role or session.checked_at != checked_at:
        session.set_role(user.role, version=stored, checked_at=checked_at)


class VersionFeed:
    """An in-process map of user id to the newest session version this process knows.

    ``publish(user_id, version)`` records a change (a smaller version than the one
    known is ignored); ``newest(user_id)`` is one dict lookup. Entries are dropped
    ``max_age`` seconds after they were published, so memory is bounded by the changes
    of one ``max_age``. ``None`` means 30 days (the default token lifetime). The
    middleware's own feed keeps ``revalidate_after`` plus a minute instead (older
    changes are caught by revalidation anyway); pass the same to a feed you make
    yourself to keep it as small. :meth:`watch` wires it to a :class:`RoleStore`'s
    ``on_change``.
    """

    def __init__(self, max_age: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_age is not None and max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_age: float = DEFAULT_MAX_AGE if max_age is None else max_age
        self.clock = clock
        self.versions: dict[str, int] = {}
        self.published: OrderedDict[str, float] = OrderedDict()

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
        horizon = (self.clock() if now is None else now) - self.max_age
        published = self.published
        while published:
            user_id, at = next(iter(published.items()))
            if at >= horizon:
                break
            del published[user_id]
            del self.versions[user_id]

    def newest(self, user_id: str) -> int | None:
        """The newest session version published for ``user_id``, or ``None``."""
        return self.versions.get(user_id)

    def __len__(self) -> int:
        return len(self.versions)

    def watch(self, store: RoleStore) -> None:
        """Publish every change ``store`` makes (role update, revocation, disabling)."""
        if self.on_change not in store.on_change:
            store.on_change.append(self.on_change)

    def on_change(self, user: StoredUser) -> Awaitable[None] | None:
        """A ``RoleStore.on_change`` listener."""
        self.publish(user.id, user.session_version)
        return None


T = TypeVar("T")


class Flight(Generic[T]):
    __slots__ = ("done", "error", "ok", "result")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.ok = False
        self.result: T | None = None
        self.error: Exception | None = None


class SingleFlight(Generic[T]):
    """Concurrent calls with the same key share one call of ``load``.

    ``await flight(key, *args)``: the first caller runs ``load(key, *args)``; callers
    that come while it runs wait for its result (or its exception). If the first
    caller is cancelled, a waiting one takes over. Only anyio primitives.
    """

    def __init__(self, load: Callable[..., Awaitable[T]]) -> None:
        self.load = load
        self.pending: dict[str, Flight[T]] = {}
        self.calls = 0

    async def __call__(self, key: str, *args: Any) -> T:
        while True:
            flight = self.pending.get(key)
            if flight is None:
                return await self.lead(key, args)
            await flight.done.wait()
            if flight.ok:
                return flight.result  # type: ignore[return-value]
            if flight.error is not None:
                raise flight.error
            # The leader was cancelled: try again, perhaps as the leader.

    async def lead(self, key: str, args: tuple[Any, ...]) -> T:
        flight: Flight[T] = Flight()
        self.pending[key] = flight
        self.calls += 1
        try:
            result = await self.load(key, *args)
        except Exception as exc:
            flight.error = exc
            raise
        else:
            flight.result, flight.ok = result, True
            return result
        finally:
            del self.pending[key]
            flight.done.set()


@dataclass(frozen=True, slots=True)
class Loaded:
    user: CheckedUser | None
    loaded_at: int  # when it was read (the request's clock)
    seen: int  # the newest version known when it was read (store's or feed's)


class Freshness:
    """The revalidation policy the middleware runs on signed-in requests.

    - ``load_user``: a :data:`UserLoader` (``RoleStore.get_user`` for a store).
    - ``revalidate_after``: seconds after ``chk`` at which a session is checked again
      (``None``: only when the feed says so).
    - ``feed``: the :class:`VersionFeed` consulted on every request, used as it is;
      without one the policy makes its own, keeping changes for ``revalidate_after``
      plus a minute (``token_lifetime`` when ``revalidate_after`` is ``None``).
    - ``on_store_error``: when the store cannot be reached, ``"keep"`` serves the
      current claims and tries again ``retry_after`` seconds later (logged once per
      interval); ``"signout"`` signs out every session that needed the check.
    - ``timeout``: seconds a load may take before it counts as unreachable.
    - ``token_lifetime``: how long a token lives (see ``feed``).

    A load is remembered for ``revalidate_after`` seconds (``memo``, bounded), so a
    user whose browser still sends the old cookie, or a client that ignores cookies,
    costs at most one query per window per process, or one per change the feed sees.
    """

    def __init__(
        self,
        load_user: UserLoader,
        *,
        revalidate_after: int | None = 300,
        feed: VersionFeed | None = None,
        on_store_error: StoreErrorPolicy = "keep",
        retry_after: int = 30,
        timeout: float = DEFAULT_TIMEOUT,
        memo_size: int = 65536,
        token_lifetime: int = DEFAULT_MAX_AGE,
    ) -> None:
        if revalidate_after is not None and revalidate_after <= 0:
            raise ValueError("revalidate_after must be positive, or None")
        if on_store_error not in ("keep", "signout"):
            raise ValueError("on_store_error must be 'keep' or 'signout'")
        self.load_user = load_user
        self.revalidate_after = revalidate_after
        if feed is None:
            feed = VersionFeed(revalidate_after + CLOCK_MARGIN if revalidate_after is not None
                               else token_lifetime)
        self.feed = feed
        self.versions = self.feed.versions  # the hot path's one dict lookup
        self.on_store_error = on_store_error
        self.retry_after = retry_after
        self.timeout = timeout
        self.memo: OrderedDict[str, Loaded] = OrderedDict()
        self.memo_size = memo_size
        self.memo_window = revalidate_after if revalidate_after is not None else retry_after
        self.flight: SingleFlight[Loaded] = SingleFlight(self.load)
        self.retry_at = 0  # while the store is down: no load before this time

    @classmethod
    def from_config(cls, config: SessionConfig) -> Freshness | None:
        """The policy for a middleware's config; ``None`` without a store or loader."""
        load_user = config.user_loader
        if config.store is not None:
            load_user = config.store.get_user
        if load_user is None:
            return None
        freshness = cls(load_user, revalidate_after=config.revalidate_after,
                        feed=config.feed, on_store_error=config.on_store_error,
                        token_lifetime=config.token_lifetime)
        if config.store is not None:
            freshness.feed.watch(config.store)
        return freshness

    @property
    def queries(self) -> int:
        """How many loads this policy has started."""
        return self.flight.calls

    def is_stale(self, session: Session, now: int) -> bool:
        """True when ``session`` must be revalidated before the request goes on."""
        user = session.user
        if user is None:
            return False
        newest = self.versions.get(user.id)
        if newest is not None:
            version = session.version
            if version is None or newest > version:
                return True
        after = self.revalidate_after
        if after is None:
            return False
        checked = session.checked_at
        return checked is None or now - checked >= after

    async def revalidate(self, session: Session, now: int) -> None:
        """Load the user (shared, remembered) and apply it to ``session``."""
        user = session.user
        if user is None:
            return
        newest = self.versions.get(user.id)
        loaded = self.memo.get(user.id)
        if (loaded is None or now - loaded.loaded_at >= self.memo_window
                or (newest is not None and newest > loaded.seen)):
            if now < self.retry_at:
                self.store_down(session)
                return
            try:
                loaded = await self.flight(user.id, now)
            except UNAVAILABLE as exc:
                if now >= self.retry_at:
                    self.retry_at = now + self.retry_after
                    logger.warning("role store unreachable, %s sessions for %ss: %s",
                                   "keeping" if self.on_store_error == "keep"
                                   else "signing out", self.retry_after, exc)
                self.store_down(session)
                return
        apply_user(session, loaded.user, loaded.loaded_at)

    async def load(self, user_id: str, now: int) -> Loaded:
        newest = self.versions.get(user_id)  # before the read: a later change reloads
        with anyio.fail_after(self.timeout):
            user = CheckedUser.coerce(await self.load_user(user_id))
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

    def store_down(self, session: Session) -> None:
        if self.on_store_error == "signout":
            session.logout()


# --- across processes: PostgreSQL LISTEN/NOTIFY (asyncio only) --------------------------

CHANNEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,62}")


def default_channel(store: RoleStore) -> str:
    return f"asgi_jwt_session:{store.table.fullname}"[:63]


class PostgresVersionFeed(VersionFeed):
    """A :class:`VersionFeed` shared by every process on one PostgreSQL database.

    **asyncio only** (asyncpg). It watches ``store`` (a PostgreSQL :class:`RoleStore`):
    each change the store makes is published here at once and sent to the other
    processes with ``pg_notify(channel, '{"id": ..., "ver": ...}')``; their feeds
    LISTEN on their own asyncpg connection (``dsn``; by default the store's database,
    see :meth:`RoleStore.asyncpg_arguments`).

    Start it with the app's lifespan (``async with feed:`` or ``await feed.start()``
    and ``await feed.stop()``). On start, and after every reconnect, it catches up
    from ``store.changes_since()``: on start everything inside ``max_age``, after a
    reconnect everything since the connection was last seen alive (a keep-alive query
    every ``keepalive`` seconds) less ``margin`` seconds. A dropped connection is
    reconnected with exponential backoff (``min_backoff`` to ``max_backoff``
    seconds, jittered); a notification that could not be sent is sent after the
    reconnect. The app starts and serves even when the database is down.

    ``backend_pid`` is the LISTEN connection's server process (for
    ``pg_terminate_backend`` in tests); ``connections`` counts successful connects;
    ``connected`` is set while listening.
    """

    def __init__(
        self,
        store: RoleStore,
        *,
        dsn: str | None = None,
        channel: str | None = None,
        max_age: float | None = None,
        margin: float = 5.0,
        keepalive: float = 10.0,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_age, clock=clock)
        if not store.is_postgres:
            raise ValueError("PostgresVersionFeed needs a PostgreSQL RoleStore")
        self.store = store
        self.connect_arguments: dict[str, Any] = {}
        if dsn is None:
            dsn, self.connect_arguments = store.asyncpg_arguments()
        self.dsn = dsn
        self.channel = channel or default_channel(store)
        if not CHANNEL.fullmatch(self.channel):
            raise ValueError(f"not a usable channel name: {self.channel!r}")
        self.margin = margin
        self.keepalive = keepalive
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connect_timeout = connect_timeout
        self.connect: Callable[..., Awaitable[Any]] = self._asyncpg_connect
        self.connection: Any = None
        self.backend_pid: int | None = None
        self.connections = 0
        self.last_alive: datetime | None = None  # server time the connection was last seen
        self.pending: dict[str, int] = {}  # notifications not sent yet
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.lock = asyncio.Lock()  # one operation at a time on the connection
        self.watch(store)

    @staticmethod
    async def _asyncpg_connect(dsn: str, *, timeout: float, **arguments: Any) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        return await asyncpg.connect(dsn, timeout=timeout, **arguments)

    # Lifecycle

    async def start(self, wait: float | None = 5.0) -> None:
        """Start listening; wait up to ``wait`` seconds for the first catch-up."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self.run())
        if wait:
            try:
                await asyncio.wait_for(self.connected.wait(), wait)
            except TimeoutError:
                logger.warning("version feed not connected after %ss; serving anyway", wait)

    async def stop(self) -> None:
        """Stop listening and close the connection."""
        task, self.task = self.task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> PostgresVersionFeed:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.stop()

    async def run(self) -> None:
        """Listen, and reconnect with backoff whenever the connection is lost."""
        delay = self.min_backoff
        failing = False
        while True:
            connections = self.connections
            reason: object = "closed"
            try:
                await self.listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = exc
            if self.connections != connections:  # it was up: a new outage begins
                delay, failing = self.min_backoff, False
            if not failing:  # logged once per outage
                logger.warning("version feed connection lost (%r); reconnecting", reason)
                failing = True
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.max_backoff)

    async def listen(self) -> None:
        """One connection's life: LISTEN, catch up, keep alive until it is lost."""
        connection = await self.connect(self.dsn, timeout=self.connect_timeout,
                                        **self.connect_arguments)
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(self.channel, self.on_notify)
            # LISTEN is in effect: later commits notify; earlier ones are caught up.
            server_now: datetime = await connection.fetchval("SELECT now()")
            if self.last_alive is None:
                since = server_now - timedelta(seconds=self.max_age)
            else:
                since = self.last_alive - timedelta(seconds=self.margin)
            for user in await self.store.changes_since(since):
                self.publish(user.id, user.session_version)
            self.last_alive = server_now
            self.connection = connection
            self.backend_pid = connection.get_server_pid()
            self.connections += 1
            self.connected.set()
            logger.info("version feed listening on %r (connection %d)",
                        self.channel, self.connections)
            await self.flush()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                except TimeoutError:
                    async with self.lock:
                        self.last_alive = await connection.fetchval(
                            "SELECT now()", timeout=self.keepalive)
        finally:
            self.connected.clear()
            self.connection = None
            if not connection.is_closed():
                connection.terminate()

    # Receiving and sending

    def on_notify(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        try:
            message = orjson.loads(payload)
            user_id, version = message["id"], message["ver"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            logger.debug("version feed: ignored payload %r", payload)
            return
        if type(user_id) is str and type(version) is int:
            self.publish(user_id, version)

    def on_change(self, user: StoredUser) -> Awaitable[None]:
        """Publish here at once, then notify the other processes."""
        self.publish(user.id, user.session_version)
        self.pending[user.id] = max(user.session_version, self.pending.get(user.id, 0))
        return self.flush()

    async def flush(self) -> None:
        """Send the pending notifications; keep them for the next connection on failure.

        Never raises: the change it reports is already committed.
        """
        connection = self.connection
        if connection is None or not self.pending:
            return
        try:
            async with self.lock:
                while self.pending:
                    user_id, version = next(iter(self.pending.items()))
                    payload = orjson.dumps({"id": user_id, "ver": version}).decode()
                    await connection.execute("SELECT pg_notify($1, $2)", self.channel, payload,
                                             timeout=self.connect_timeout)
                    if self.pending.get(user_id) == version:
                        del self.pending[user_id]
        except Exception as exc:
            logger.warning("version feed: notify failed, sent after reconnect: %r", exc)
