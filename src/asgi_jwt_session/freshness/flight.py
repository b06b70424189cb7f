"""Single flight: concurrent calls with the same key share one call (anyio only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import anyio

__all__ = ["SingleFlight"]

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


