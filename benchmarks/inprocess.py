"""Per-request session cost in process: direct ASGI calls, no server, no sockets.

Each strategy's app is called with a fresh copy of a realistic HTTP scope carrying one
user's cookie; users rotate through the pool. Strategies take turns request by request
(round robin, order rotated each round; ``batch`` > 1 gives each a run of requests), so
that drift of the machine (frequency, neighbours, the garbage collector) lands on all of
them alike, and so that no strategy runs with CPU caches kept hot by its own previous
request, which a server never does either: long hot batches read ~30% cheaper here. The
session cost is the strategy's time minus the ``none`` baseline from the same rounds.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Message

from benchmarks.app import BenchApp, call, make_scope, receive_empty


@dataclass
class Stream:
    """What one strategy is fed: ``warmup`` once (checked), then ``scopes`` cyclically."""

    app: BenchApp
    warmup: Sequence[dict[str, Any]]
    expected: Sequence[bytes]  # body expected for each warm-up scope
    scopes: Sequence[dict[str, Any]]


def scopes_for(cookies: Sequence[str]) -> list[dict[str, Any]]:
    return [make_scope("/", cookie) for cookie in cookies]


async def _discard(message: Message) -> None:
    return None


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "median": statistics.median(ordered) / 1000,
        "p99": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "mean": statistics.fmean(ordered) / 1000,
        "n": n,
    }


async def warm_up(streams: dict[str, Stream]) -> None:
    """Run every warm-up request and check it authenticated the right user."""
    for name, stream in streams.items():
        for scope, expected in zip(stream.warmup, stream.expected, strict=True):
            status, _, body = await call(stream.app.app, dict(scope))
            if status != 200 or body != expected:
                raise RuntimeError(
                    f"{name}: expected 200 {expected!r}, got {status} {body[:80]!r}"
                )


async def measure(streams: dict[str, Stream], iterations: int, batch: int = 1,
                  tick: Callable[[], None] | None = None) -> dict[str, list[int]]:
    """``iterations`` timed requests per stream, in interleaved batches; ns per request."""
    samples: dict[str, list[int]] = {name: [] for name in streams}
    position = dict.fromkeys(streams, 0)
    names = list(streams)
    rounds = max(1, -(-iterations // batch))
    perf = time.perf_counter_ns
    gc.collect()
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            stream = streams[name]
            app = stream.app.app
            scopes = stream.scopes
            count = len(scopes)
            out = samples[name]
            i = position[name]
            for _ in range(min(batch, iterations - len(out))):
                scope = dict(scopes[i % count])
                i += 1
                t0 = perf()
                await app(scope, receive_empty, _discard)
                out.append(perf() - t0)
            position[name] = i
        if tick is not None:
            tick()
    return samples


def session_costs(samples: dict[str, list[int]], baseline: str = "none"
                  ) -> dict[str, dict[str, Any]]:
    """Per strategy: request time and its cost over ``baseline`` (µs)."""
    base = summarize(samples[baseline])
    results: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        request = summarize(values)
        results[name] = {
            "request_us": request,
            "session_cost_us": {
                key: request[key] - base[key] for key in ("median", "p99", "mean")
            },
        }
    return results


def ratios(results: dict[str, dict[str, Any]], baseline: str = "none") -> None:
    """Add ``ratio_to_jwt_warm`` / ``ratio_to_jwt_cold`` (median cost over median cost)."""
    for reference in ("jwt-warm", "jwt-cold"):
        ref = results.get(reference, {}).get("session_cost_us", {}).get("median")
        for name, entry in results.items():
            cost = entry["session_cost_us"]["median"]
            usable = ref is not None and ref > 0.05 and name != baseline
            entry[f"ratio_to_{reference.replace('-', '_')}"] = (
                cost / ref if usable and ref is not None else None
            )


async def run_streams(streams: dict[str, Stream], iterations: int, batch: int = 1,
                      tick: Callable[[], None] | None = None) -> dict[str, list[int]]:
    """Connect, warm up (checked), measure, disconnect."""
    connected: list[BenchApp] = []
    try:
        for stream in streams.values():
            if not any(stream.app is other for other in connected):
                await stream.app.connect()
                connected.append(stream.app)
        await warm_up(streams)
        return await measure(streams, iterations, batch, tick)
    finally:
        for bench_app in reversed(connected):
            await bench_app.disconnect()
