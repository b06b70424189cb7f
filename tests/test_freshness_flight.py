"""SingleFlight: one load per key for all concurrent callers (asyncio and trio)."""

from __future__ import annotations

import anyio
import pytest

from asgi_jwt_session.errors import StoreUnavailable
from asgi_jwt_session.freshness import SingleFlight

pytestmark = pytest.mark.anyio


async def test_single_flight_shares_one_call() -> None:
    started = anyio.Event()
    release = anyio.Event()
    calls: list[str] = []

    async def load(key: str) -> str:
        calls.append(key)
        started.set()
        await release.wait()
        return key.upper()

    flight: SingleFlight[str] = SingleFlight(load)
    results: list[str] = []

    async def one(key: str) -> None:
        results.append(await flight(key))

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(one, "alice")
        tg.start_soon(one, "bob")
        await started.wait()
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert sorted(calls) == ["alice", "bob"]
    assert results.count("ALICE") == 50 and results.count("BOB") == 1
    assert flight.pending == {}
    assert await flight("alice") == "ALICE" and calls.count("alice") == 2  # not cached


async def test_single_flight_shares_the_error() -> None:
    release = anyio.Event()

    async def load(key: str) -> str:
        await release.wait()
        raise StoreUnavailable("down")

    flight: SingleFlight[str] = SingleFlight(load)
    errors: list[BaseException] = []

    async def one() -> None:
        try:
            await flight("alice")
        except StoreUnavailable as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(errors) == 5 and flight.calls == 1


async def test_single_flight_leader_cancelled() -> None:
    first = anyio.Event()
    calls = 0

    async def load(key: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            first.set()
            await anyio.sleep_forever()
        return "second"

    flight: SingleFlight[str] = SingleFlight(load)
    results: list[str] = []

    async def follower() -> None:
        results.append(await flight("alice"))

    leader_scope = anyio.CancelScope()

    async def leader() -> None:
        with leader_scope:
            await flight("alice")

    async with anyio.create_task_group() as tg:
        tg.start_soon(leader)
        await first.wait()
        tg.start_soon(follower)
        await anyio.wait_all_tasks_blocked()
        leader_scope.cancel()
    assert results == ["second"] and calls == 2
