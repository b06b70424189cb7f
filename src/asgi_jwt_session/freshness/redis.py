"""A version feed across processes: a Redis Stream (asyncio only, redis-py)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from asgi_jwt_session.errors import describe
from asgi_jwt_session.freshness.connection import ConnectedFeed
from asgi_jwt_session.store.base import Observable, StoredUser

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_CHANNEL", "ChangeLog", "RedisVersionFeed"]

logger = logging.getLogger("asgi_jwt_session.freshness")

DEFAULT_CHANNEL = "asgi_jwt_session:versions"


@runtime_checkable
class ChangeLog(Protocol):
    """A store that can list its recent changes (a :class:`RoleStore` can)."""

    async def changes_since(self, when: datetime) -> list[StoredUser]:
        """Users changed at or after ``when``, oldest first."""


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _epoch_started(epoch: str) -> float:
    """When this Redis data set began (ms, server clock); unknown: now."""
    started = epoch.rpartition(":")[2]
    return int(started) if started.isascii() and started.isdigit() else float("inf")


def _version(value: object) -> int | None:
    text = _text(value)
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 18:
        return None
    return int(text)


class RedisVersionFeed(ConnectedFeed):
    """A :class:`VersionFeed` shared by every process on one Redis.

    For deployments whose database cannot LISTEN (SQLite, MySQL) or that already run
    Redis. **asyncio only** (redis-py's asyncio client); Redis 6.2 or later.

    ``redis`` is a URL (``"redis://host:6379/0"``; the feed makes, owns and closes its
    client) or a ``redis.asyncio.Redis`` client (yours to close; a ``socket_timeout``
    shorter than ``keepalive`` shortens the blocking read to half of it).

    Changes are entries of a Redis Stream named ``channel``, with the fields
    ``id`` (user id) and ``ver`` (session version); readers ignore fields they do not
    know, so a message can grow. Each change the watched store makes is published here
    at once and appended with ``XADD`` (trimmed to ``max_age`` with ``MINID ~``); every
    feed reads the stream with ``XREAD BLOCK`` from the last entry id it saw, so a
    change reaches the other processes as soon as Redis has it, and a reconnect
    resumes exactly where the feed left off. On start it reads everything inside
    ``max_age``.

    A key next to the stream (``<channel>:epoch``, a random token set once) tells
    whether Redis lost its data (a restart without persistence, a flush): then the
    feed reads the new stream from its start and, when its store can list changes
    (``changes_since``, as :class:`RoleStore` can), reads the store since it last
    heard from Redis, less ``margin`` seconds. It reads the store on start too while
    Redis holds less than ``max_age`` of history; otherwise it never queries it.

    The app starts and serves even when Redis is down:
    :meth:`start` returns once the first attempt failed. A lost connection is retried
    with exponential backoff (``min_backoff`` to ``max_backoff`` seconds, jittered),
    logged once per outage; a change that could not be sent is sent after the
    reconnect. With the default ``max_backoff`` (0.5 s) every process is reading again
    within about half a second of Redis answering, so a change made during the outage
    reaches them all within a second of Redis being back. A silent connection is
    noticed within ``keepalive`` plus ``timeout`` seconds.

    ``connections`` counts successful connects; ``connected`` is set while reading;
    ``last_id`` is the last stream entry read; ``pending`` holds unsent changes;
    ``on_connect`` callables are called after each connect and catch-up, and
    :meth:`wake` cuts a reconnect's backoff short.
    """

    in_store_database = False  # Redis answering says nothing of the store

    up_log = "version feed reading %r (connection %d)"
    again_log = None  # a reconnect is logged at INFO, like the first connect

    def __init__(
        self,
        redis: str | Redis,
        *,
        store: Observable | None = None,
        channel: str = DEFAULT_CHANNEL,
        max_age: float | None = None,
        margin: float = 5.0,
        keepalive: float = 10.0,
        min_backoff: float = 0.1,
        max_backoff: float = 0.5,
        timeout: float = 5.0,
        batch: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_age, min_backoff=min_backoff, max_backoff=max_backoff,
                         clock=clock)
        if not channel:
            raise ValueError("channel must not be empty")
        if keepalive <= 0 or timeout <= 0 or batch < 1:
            raise ValueError("keepalive and timeout must be positive, batch at least 1")
        self.channel = channel
        self.epoch_key = f"{channel}:epoch"
        self.margin = margin
        self.keepalive = keepalive
        self.timeout = timeout
        self.batch = batch
        self.owns_client = isinstance(redis, str)
        self.client: Redis = self._make_client(redis) if isinstance(redis, str) else redis
        self.block = self._block_time()
        self.store = store
        self.epoch: str | None = None  # the Redis data set the feed has read
        self.last_id: str | None = None  # the last stream entry read
        self.last_alive: datetime | None = None  # wall clock, Redis last answered a read
        self.behind: datetime | None = None  # the store must be read since then
        self.pending: dict[str, int] = {}  # changes not sent yet
        self.sending_failed = False
        self.store_failed = False
        self.lock = asyncio.Lock()  # one sender at a time
        if store is not None:
            self.watch(store)

    def _make_client(self, url: str) -> Redis:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        return Redis.from_url(
            url,
            socket_timeout=self.keepalive + self.timeout,
            socket_connect_timeout=self.timeout,
            retry=Retry(NoBackoff(), 0),  # the feed's own loop backs off
            client_name="asgi_jwt_session.feed",
        )

    def _block_time(self) -> int:
        """How long one ``XREAD BLOCK`` waits, in milliseconds."""
        seconds = self.keepalive
        kwargs = getattr(self.client.connection_pool, "connection_kwargs", {})
        socket_timeout = kwargs.get("socket_timeout")
        if (not self.owns_client and isinstance(socket_timeout, int | float)
                and socket_timeout > 0):
            seconds = min(seconds, socket_timeout / 2)
        return max(1, int(seconds * 1000))

    # Lifecycle

    async def stop(self) -> None:
        """Stop reading; close the client if the feed made it."""
        await super().stop()
        if self.owns_client:
            await self.client.aclose()

    async def listen(self) -> None:
        """One connection's life: find where to read from, catch up, then follow."""
        async with asyncio.timeout(self.timeout):
            await self.resume_point()
        while await self.read(block=None) == self.batch:
            pass  # catching up, a batch at a time
        await self.catch_up_from_store()
        self.connected_now()
        await self.flush()
        while True:
            await self.read(block=self.block)
            if self.pending:
                await self.flush()
            if self.behind is not None:
                await self.catch_up_from_store()

    async def resume_point(self) -> None:
        """Set ``last_id`` (and ``behind``) from the epoch and the server's clock."""
        client = self.client
        seconds, microseconds = await client.time()
        now_ms = seconds * 1000 + microseconds // 1000
        await client.set(self.epoch_key, f"{uuid.uuid4().hex}:{now_ms}", nx=True)
        epoch = _text(await client.get(self.epoch_key))
        if epoch is None:
            raise RuntimeError(f"{self.epoch_key!r} is not a string")
        now = datetime.now(UTC)
        if self.epoch is None:  # first connection: everything inside max_age
            horizon = now_ms - int(self.max_age * 1000)
            self.last_id = f"{max(horizon, 0)}-0"
            if _epoch_started(epoch) > horizon:  # Redis has less history: the store has it
                self.behind = now - timedelta(seconds=self.max_age)
        elif epoch != self.epoch:  # Redis lost its data while the feed was away
            logger.warning("version feed: Redis lost its data; reading %r from the start",
                           self.channel)
            self.last_id = "0-0"
            since = (self.last_alive or now) - timedelta(seconds=self.margin)
            self.behind = since if self.behind is None else min(self.behind, since)
        self.epoch = epoch

    async def read(self, block: int | None) -> int:
        """Read the entries after ``last_id`` (waiting ``block`` ms); publish them."""
        assert self.last_id is not None
        async with asyncio.timeout((block or 0) / 1000 + self.timeout):  # a silent peer
            response = await self.client.xread({self.channel: self.last_id},
                                               count=self.batch, block=block)
        self.last_alive = datetime.now(UTC)
        entries = 0
        for stream_entries in _stream_entries(response):
            for entry_id, fields in stream_entries:
                entries += 1
                self.receive(entry_id, fields or {})
        return entries

    def receive(self, entry_id: object, fields: Mapping[Any, Any]) -> None:
        """One stream entry: ``{"id": user_id, "ver": version, ...}``."""
        last_id = _text(entry_id)
        if last_id is not None:
            self.last_id = last_id
        message = {_text(key): value for key, value in fields.items()}
        user_id, version = _text(message.get("id")), _version(message.get("ver"))
        if user_id is None or version is None:
            logger.debug("version feed: ignored entry %r %r", entry_id, fields)
            return
        self.publish(user_id, version)

    async def catch_up_from_store(self) -> None:
        """Publish the store's changes since ``behind``; keep ``behind`` on failure."""
        since, store = self.behind, self.store
        if since is None:
            return
        if not isinstance(store, ChangeLog):
            self.behind = None
            return
        try:
            async with asyncio.timeout(self.timeout):
                users = await store.changes_since(since)
        except Exception as exc:
            if not self.store_failed:  # logged once until it succeeds
                logger.warning("version feed: reading the store's changes failed (%s); "
                               "trying again every %ss", describe(exc), self.block / 1000)
                self.store_failed = True
            return
        for user in users:
            self.publish(user.id, user.session_version)
        self.behind, self.store_failed = None, False

    # Sending

    def on_change(self, user: StoredUser) -> Awaitable[None]:
        """Publish here at once, then append to the stream for the other processes."""
        self.publish(user.id, user.session_version)
        self.pending[user.id] = max(user.session_version, self.pending.get(user.id, 0))
        return self.flush()

    async def flush(self) -> None:
        """Send the pending changes; keep them for later on failure.

        Never raises: the change it reports is already committed. While the feed is
        not connected it sends nothing (the store's write does not wait on an outage);
        the reconnect sends them.
        """
        if not self.pending or not self.connected.is_set():
            return
        try:
            async with self.lock:
                while self.pending:
                    user_id, version = next(iter(self.pending.items()))
                    async with asyncio.timeout(self.timeout):
                        await self.send(user_id, version)
                    if self.pending.get(user_id) == version:
                        del self.pending[user_id]
        except Exception as exc:
            if not self.sending_failed:
                logger.warning("version feed: sending failed (%s); sent after reconnect",
                               describe(exc))
                self.sending_failed = True
        else:
            self.sending_failed = False

    async def send(self, user_id: str, version: int) -> None:
        """Append one change to the stream, trimming entries older than ``max_age``."""
        horizon = int((time.time() - self.max_age) * 1000)
        await self.client.xadd(self.channel, {"id": user_id, "ver": str(version)},
                               minid=max(horizon, 0), approximate=True)


def _stream_entries(response: Any) -> Iterable[Iterable[tuple[Any, Mapping[Any, Any]]]]:
    """The entry lists of an XREAD reply: RESP2 gives ``[[stream, entries]]``, RESP3
    ``{stream: [entries]}``."""
    if not response:
        return []
    if isinstance(response, Mapping):
        return [entries for value in response.values() for entries in value]
    return [entries for _, entries in response]
