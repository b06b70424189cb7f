"""A version feed across processes: PostgreSQL LISTEN/NOTIFY (asyncio only, asyncpg)."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson

from asgi_jwt_session.errors import describe
from asgi_jwt_session.freshness.connection import ConnectedFeed
from asgi_jwt_session.store.base import Observable, StoredUser

__all__ = ["ChangeSource", "PostgresVersionFeed"]

logger = logging.getLogger("asgi_jwt_session.freshness")


class ChangeSource(Observable, Protocol):
    """What the feed needs of its store: a PostgreSQL
    :class:`~asgi_jwt_session.store.RoleStore` is one."""

    is_postgres: bool

    @property
    def table_name(self) -> str:
        """The table's name (schema-qualified), for the default channel."""

    def asyncpg_arguments(self) -> tuple[str, dict[str, Any]]:
        """A DSN and ``asyncpg.connect()`` keyword arguments for the store's database."""

    async def changes_since(self, when: datetime) -> list[StoredUser]:
        """Users changed at or after ``when``, oldest first."""


CHANNEL = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,62}")


def default_channel(store: ChangeSource) -> str:
    """The store's own channel where it names one (Better Auth's tables: the one its
    trigger notifies), else one named after the store's table."""
    channel = getattr(store, "channel", None)
    return channel if isinstance(channel, str) else f"asgi_jwt_session:{store.table_name}"[:63]


class PostgresVersionFeed(ConnectedFeed):
    """A :class:`VersionFeed` shared by every process on one PostgreSQL database.

    **asyncio only** (asyncpg). It watches ``store`` (a PostgreSQL :class:`RoleStore`):
    each change the store makes is published here at once and sent to the other
    processes with ``pg_notify(channel, '{"id": ..., "ver": ...}')``; their feeds
    LISTEN on their own asyncpg connection (``dsn``; by default the store's database,
    see :meth:`RoleStore.asyncpg_arguments`).

    Start it with the app's lifespan (``async with feed:`` or ``await feed.start()``
    and ``await feed.stop()``). On start, and after every reconnect, it catches up
    on its own connection (``store.versions_since_query()``, else
    ``store.changes_since()``): on start everything inside ``max_age``, after a
    reconnect everything since the connection was last seen alive (a keep-alive query
    every ``keepalive`` seconds) less ``margin`` seconds, never further back than
    ``max_age``. ``max_age=None`` follows the :class:`Freshness` using the feed: its
    ``revalidate_after`` plus a minute, so a start reads the changes of minutes, not
    of 30 days. A dropped connection is reconnected with exponential backoff
    (``min_backoff`` to ``max_backoff`` seconds, jittered); a notification that could
    not be sent is sent after the reconnect. The app starts and serves even when the
    database is down: :meth:`start` returns once the first attempt failed.

    ``backend_pid`` is the LISTEN connection's server process (for
    ``pg_terminate_backend`` in tests); ``connections`` counts successful connects;
    ``connected`` is set while listening; ``on_connect`` callables are called after
    each connect and catch-up (a :class:`Freshness` ends a store outage there), and
    :meth:`wake` cuts a reconnect's backoff short (a Freshness calls it when a load
    succeeds during an outage).
    """

    def __init__(
        self,
        store: ChangeSource,
        *,
        dsn: str | None = None,
        channel: str | None = None,
        max_age: float | None = None,
        margin: float = 5.0,
        keepalive: float = 10.0,
        min_backoff: float = 0.1,
        max_backoff: float = 1.0,
        connect_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_age, min_backoff=min_backoff, max_backoff=max_backoff,
                         clock=clock)
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
        self.connect_timeout = connect_timeout
        self.connect: Callable[..., Awaitable[Any]] = self._asyncpg_connect
        self.connection: Any = None
        self.backend_pid: int | None = None
        self.last_alive: datetime | None = None  # server time the connection was last seen
        self.pending: dict[str, int] = {}  # notifications not sent yet
        self.lock = asyncio.Lock()  # one operation at a time on the connection
        self.watch(store)

    @staticmethod
    async def _asyncpg_connect(dsn: str, *, timeout: float, **arguments: Any) -> Any:
        import asyncpg  # type: ignore[import-untyped]

        return await asyncpg.connect(dsn, timeout=timeout, **arguments)

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
            since = server_now - timedelta(seconds=self.max_age)
            if self.last_alive is not None:
                since = max(since, self.last_alive - timedelta(seconds=self.margin))
            await self.catch_up(connection, since)
            self.last_alive = server_now
            self.connection = connection
            self.backend_pid = connection.get_server_pid()
            self.connected_now()
            await self.flush()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self.keepalive)
                except TimeoutError:
                    async with self.lock:
                        self.last_alive = await connection.fetchval(
                            "SELECT now()", timeout=self.keepalive)
        finally:
            self.connection = None
            if not connection.is_closed():
                connection.terminate()

    async def catch_up(self, connection: Any, since: datetime) -> None:
        """Publish every change committed at or after ``since``."""
        query = getattr(self.store, "versions_since_query", None)
        if callable(query):  # two columns on our own connection: fast, store or not
            for user_id, version in await connection.fetch(query(), since):
                self.publish(user_id, version)
            return
        for user in await self.store.changes_since(since):
            self.publish(user.id, user.session_version)

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
            logger.warning("version feed: notify failed, sent after reconnect: %s",
                           describe(exc))

