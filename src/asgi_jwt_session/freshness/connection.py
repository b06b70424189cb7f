"""The connection life shared by the cross-process feeds (asyncio only).

:class:`ConnectedFeed` runs a background task that keeps one connection up:
:meth:`~ConnectedFeed.listen` (a subclass's) connects, catches up, calls
:meth:`~ConnectedFeed.connected_now` and follows the changes until the connection is
lost; :meth:`~ConnectedFeed.run` calls it again with jittered exponential backoff,
logging once per outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from asgi_jwt_session.asyncio_only import require_asyncio
from asgi_jwt_session.errors import describe
from asgi_jwt_session.freshness.feed import VersionFeed

__all__ = ["ConnectedFeed", "describe"]

logger = logging.getLogger("asgi_jwt_session.freshness")


class ConnectedFeed(VersionFeed):
    """A :class:`VersionFeed` fed by one connection that a background task keeps up.

    Subclasses implement :meth:`listen`. ``connected`` is set while the connection is
    up and caught up; ``settled`` once the first attempt connected or failed;
    ``connections`` counts successful connects; ``on_connect`` callables are called
    after each connect and catch-up, and :meth:`wake` cuts a reconnect's backoff short.
    ``in_store_database``: the feed's connection goes to the store's own database, so a
    Freshness may take a connect as the end of a store outage.
    """

    channel: str  # what the log lines name
    # Whether a connect proves the store's database answers (the feed lives in it).
    in_store_database = True
    up_log = "version feed listening on %r (connection %d)"
    again_log: str | None = "version feed listening again on %r (connection %d)"

    def __init__(
        self,
        max_age: float | None = None,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_age, clock=clock)
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.connections = 0
        self.task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.settled = asyncio.Event()  # the first attempt connected or failed
        self.woken = asyncio.Event()  # cut the backoff short
        self.failing = False  # between a failed attempt and the next connect
        self.on_connect: list[Callable[[], object]] = []

    async def listen(self) -> None:
        """One connection's life: connect, catch up, call :meth:`connected_now`, then
        follow the changes; return or raise when the connection is lost."""
        raise NotImplementedError

    # Lifecycle

    async def start(self, wait: float | None = 5.0) -> None:
        """Start the connection; wait up to ``wait`` seconds for the first catch-up, or
        for the first attempt to fail (then it goes on trying in the background)."""
        if self.task is None:
            require_asyncio(type(self).__name__)
            self.task = asyncio.get_running_loop().create_task(self.run())
        if wait:
            try:
                await asyncio.wait_for(self.settled.wait(), wait)
            except TimeoutError:
                logger.warning("version feed not connected after %ss; serving anyway, "
                               "connecting in the background", wait)

    async def stop(self) -> None:
        """Stop the background task, which closes the connection."""
        task, self.task = self.task, None
        if task is not None:
            # On Python 3.11 a cancel can be lost inside a client library
            # (asyncio.wait_for returns when its future is already done): cancel until
            # the task ends.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                task.result()

    async def run(self) -> None:
        """Listen, and reconnect with backoff whenever the connection is lost."""
        delay = self.min_backoff
        while True:
            connections = self.connections
            reason = "the connection closed"
            try:
                await self.listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = describe(exc)
            finally:
                self.connected.clear()
            if self.connections != connections:  # it was up: a new outage begins
                delay = self.min_backoff
            if not self.failing:  # logged once per outage
                self.failing = True
                if self.connections == 0:
                    logger.warning("version feed cannot connect (%s); serving without it, "
                                   "connecting in the background", reason)
                else:
                    logger.warning("version feed connection lost (%s); reconnecting", reason)
            self.settled.set()
            with contextlib.suppress(TimeoutError):  # the backoff, unless woken
                await asyncio.wait_for(self.woken.wait(), delay * random.uniform(0.5, 1.0))
            self.woken.clear()
            delay = min(delay * 2, self.max_backoff)

    def connected_now(self) -> None:
        """:meth:`listen` is connected and caught up: count it, log it, call the
        ``on_connect`` callables."""
        self.connections += 1
        self.connected.set()
        self.settled.set()
        again, self.failing = self.failing, False
        self.log_connected(again)
        for callback in self.on_connect:
            callback()

    def log_connected(self, again: bool) -> None:
        """``up_log`` at INFO; a reconnect after an outage ``again_log`` at WARNING (it
        ends the outage's warning), unless it is ``None``."""
        if again and self.again_log is not None:
            logger.warning(self.again_log, self.channel, self.connections)
        else:
            logger.info(self.up_log, self.channel, self.connections)

    def wake(self) -> None:
        """The database answered someone else (a store query): reconnect now rather
        than at the end of the backoff. Nothing happens while connected."""
        if not self.connected.is_set():
            self.woken.set()
