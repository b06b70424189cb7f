"""The users, stores and cookies a run measures with, and the in-process stream each
strategy is fed."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmarks import inprocess
from benchmarks.app import FIXED_USER, BenchConfig, mint_cookies, role_for, user_id
from benchmarks.strategies import Store, Strategy, read_fixed


@dataclass
class Prepared:
    users: list[tuple[str, str]]
    cookies: dict[str, list[str]]  # per strategy, aligned with users
    fresh: dict[str, list[str]]  # never-seen cookies, per ``first_sight`` strategy
    expected: list[bytes]  # the body for each user


def distinct_stores(strategies: Iterable[Strategy]) -> list[Store]:
    """Each store once, in the strategies' order (two strategies may share one)."""
    return list(dict.fromkeys(s.store for s in strategies if s.store is not None))


async def prepare(strategies: Sequence[Strategy], config: BenchConfig, users: int,
                  fresh_count: int = 0) -> Prepared:
    """Fill the strategies' stores with ``users`` users and one session each, mint every
    strategy's cookies through its own login path (or use the stored session ids), and
    ``fresh_count`` more for each ``first_sight`` strategy."""
    pool = [(user_id(i), role_for(i)) for i in range(1, users + 1)]
    sids = [secrets.token_urlsafe(32) for _ in pool]
    rows = [(uid, role, sid) for (uid, role), sid in zip(pool, sids, strict=True)]
    for store in distinct_stores(strategies):
        await store(config, rows)

    cookies: dict[str, list[str]] = {}
    fresh: dict[str, list[str]] = {}
    for strategy in strategies:
        if strategy.signs_in:
            minter = strategy.build(config)
            await minter.connect()
            try:
                cookies[strategy.name] = await mint_cookies(minter, pool)
                if strategy.first_sight:
                    picks = [pool[i % len(pool)] for i in range(fresh_count)]
                    fresh[strategy.name] = await mint_cookies(minter, picks)
            finally:
                await minter.disconnect()
        elif strategy.store is not None:
            cookies[strategy.name] = [f"{strategy.cookie}={sid}" for sid in sids]
    # A strategy with neither (the baseline) carries the longest cookie and ignores it.
    longest = max(cookies.values(), key=lambda c: len(c[0]), default=["theme=dark"] * users)
    for strategy in strategies:
        cookies.setdefault(strategy.name, longest)
    expected = [f"{uid} {role}".encode() for uid, role in pool]
    return Prepared(pool, cookies, fresh, expected)


def expected_for(strategy: Strategy, prepared: Prepared, untouched: bool = False
                 ) -> list[bytes]:
    """The body each user's request must get: a route that does not read the session
    (the baseline's, or any with ``untouched``) always answers one user."""
    if untouched or strategy.read_user is read_fixed:
        return [" ".join(FIXED_USER).encode()] * len(prepared.users)
    return prepared.expected


def build(strategy: Strategy, config: BenchConfig, bare: bool = False,
          untouched: bool = False) -> inprocess.BenchApp:
    """The strategy's app; ``untouched``: its route does not read the session."""
    return strategy.build(config, bare, read_fixed if untouched else None)


def stream_for(strategy: Strategy, config: BenchConfig, prepared: Prepared, warmup: int,
               iterations: int, fresh_every: int, bare: bool = False,
               untouched: bool = False) -> inprocess.Stream:
    """The requests ``strategy`` gets in process: ``warmup`` checked requests (every user
    once more for ``warm_all``), then its users in turn, and for ``first_sight`` a
    never-seen cookie as every ``fresh_every``-th request. ``untouched``: the route
    answers without reading the session (the middleware still reads the cookie)."""
    cookies = prepared.cookies[strategy.name]
    expected = expected_for(strategy, prepared, untouched)
    scopes = inprocess.scopes_for(cookies)
    count = max(warmup, len(cookies)) if strategy.warm_all else warmup
    order = scopes
    fresh = prepared.fresh.get(strategy.name)
    if fresh:  # the n-th fresh cookie at request n * fresh_every (cycled when short)
        order = inprocess.scopes_for([
            fresh[((i + 1) // fresh_every - 1) % len(fresh)] if (i + 1) % fresh_every == 0
            else cookies[i % len(cookies)]
            for i in range(iterations)
        ])
    return inprocess.Stream(build(strategy, config, bare, untouched),
                            [scopes[i % len(scopes)] for i in range(count)],
                            [expected[i % len(expected)] for i in range(count)], order)
