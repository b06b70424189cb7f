"""The in-process harness: direct ASGI calls, no server, no sockets.

Each app is called with a fresh copy of a realistic HTTP scope carrying one user's
cookie; users rotate through the pool. Streams take turns in batches (round robin, order
rotated each round). With ``batch=1`` they take turns request by request, so that drift
of the machine (frequency, neighbours, the garbage collector) lands on all of them alike
and no stream runs with CPU caches kept hot by its own previous request, which a server
never does either. With ``batch`` equal to the iterations each stream runs alone in a
tight loop: the code's own cost with hot caches. The session cost is a stream's time
minus the baseline stream's from the same run.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Scope


async def nothing() -> None:
    return None


@dataclass
class BenchApp:
    """An ASGI app and its connection lifecycle (opened before it is called)."""

    name: str
    app: ASGIApp
    connect: Callable[[], Awaitable[None]] = nothing
    disconnect: Callable[[], Awaitable[None]] = nothing


@dataclass
class Stream:
    """What one app is fed: ``warmup`` once (each checked against ``expected``), then
    ``scopes`` cyclically."""

    app: BenchApp
    warmup: Sequence[Scope]
    expected: Sequence[bytes]
    scopes: Sequence[Scope]


def make_scope(path: str = "/", cookie: str | None = None) -> Scope:
    """A realistic HTTP scope, with the headers a browser sends."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) bench"),
        (b"accept", b"text/plain,*/*;q=0.8"),
        (b"accept-encoding", b"gzip, deflate"),
        (b"accept-language", b"en-US,en;q=0.5"),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    path_only, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_only,
        "raw_path": path_only.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


def scopes_for(cookies: Sequence[str | None]) -> list[Scope]:
    """One ``GET /`` scope per cookie."""
    return [make_scope("/", cookie) for cookie in cookies]


async def receive_empty() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


async def call(app: ASGIApp, scope: Scope) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """One request through ``app``: status, response headers, body."""
    status = 0
    headers: list[tuple[bytes, bytes]] = []
    body = bytearray()

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status = message["status"]
            headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive_empty, send)
    return status, headers, bytes(body)


def set_cookies(headers: Sequence[tuple[bytes, bytes]]) -> list[str]:
    """The ``name=value`` pairs of the Set-Cookie lines, as a browser would send them."""
    return [value.decode("latin-1").split(";", 1)[0].strip()
            for name, value in headers if name.lower() == b"set-cookie"]


async def warm_up(streams: dict[str, Stream]) -> None:
    """Run every warm-up request and check it answered the expected body."""
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
    names = list(streams)
    samples: dict[str, list[int]] = {name: [] for name in names}
    position = dict.fromkeys(names, 0)
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
                await app(scope, receive_empty, discard)
                out.append(perf() - t0)
            position[name] = i
        if tick is not None:
            tick()
    return samples


async def run_streams(streams: dict[str, Stream], iterations: int, batch: int = 1,
                      tick: Callable[[], None] | None = None) -> dict[str, list[int]]:
    """Connect each app once, warm up (checked), measure, disconnect."""
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


def summarize(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median, p99 and mean in µs, and the sample count."""
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "median": statistics.median(ordered) / 1000,
        "p99": ordered[min(n - 1, int(n * 0.99))] / 1000,
        "mean": statistics.fmean(ordered) / 1000,
        "n": n,
    }


def session_costs(samples: dict[str, list[int]], baseline: str, batch: int = 1
                  ) -> dict[str, dict[str, Any]]:
    """Per stream: request time and its cost over ``baseline`` (µs). With ``batch`` > 1
    (streams taking turns in batches), the cost median is the median over rounds of the
    batch's median minus the baseline's batch median of the same round: the machine's
    drift between rounds cancels out of each difference. Mean and p99 are over all
    samples."""
    base = summarize(samples[baseline])
    results: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        request = summarize(values)
        cost = {key: request[key] - base[key] for key in ("median", "p99", "mean")}
        if batch > 1:
            cost["median"] = paired_median(values, samples[baseline], batch) / 1000
        results[name] = {"request_us": request, "session_cost_us": cost}
    return results


def paired_median(values: Sequence[int], baseline: Sequence[int], batch: int) -> float:
    """The median over rounds of (median of a round's batch of ``values`` - median of the
    same round's batch of ``baseline``), ns."""
    rounds = min(len(values), len(baseline)) // batch
    if rounds == 0:
        return statistics.median(values) - statistics.median(baseline)
    return statistics.median(
        statistics.median(values[i * batch:(i + 1) * batch])
        - statistics.median(baseline[i * batch:(i + 1) * batch])
        for i in range(rounds))


def ratio_key(reference: str, stat: str = "median") -> str:
    """``ratio_to_jwt_warm`` for ``jwt-warm``'s median, ``ratio_to_jwt_mix_mean`` for
    ``jwt-mix``'s mean."""
    return "ratio_to_" + reference.replace("-", "_") + ("" if stat == "median" else f"_{stat}")


def add_ratios(results: dict[str, dict[str, Any]], references: Sequence[tuple[str, str]],
               reference_costs: dict[str, dict[str, Any]] | None = None,
               skip: Sequence[str] = ()) -> None:
    """Add ``ratio_to_<reference>`` to each entry: its cost over the reference's, both
    the reference's statistic (median to median, mean to mean); the references' costs
    come from ``reference_costs`` when given."""
    source = results if reference_costs is None else reference_costs
    for reference, stat in references:
        ref = source.get(reference, {}).get("session_cost_us", {}).get(stat)
        for name, entry in results.items():
            usable = ref is not None and ref > 0.05 and name not in skip
            entry[ratio_key(reference, stat)] = (
                entry["session_cost_us"][stat] / ref if usable and ref else None
            )
