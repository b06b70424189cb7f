"""Tight loops: the per-request session cost of every strategy that only computes (no
store, no server), each on its own with hot caches.

Each strategy's middleware wraps a bare ASGI endpoint that reads the user id and role
(no routing) and serves ``--requests`` requests in a row through the in-process harness:
the code's own cost, the figure a micro-benchmark of another library would give. The
suite (``benchmarks.run``) interleaves the strategies request by request instead.

    python -m benchmarks.bench_core [--requests N] [--users N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
from typing import Any

from benchmarks import inprocess, output
from benchmarks.app import BenchConfig
from benchmarks.prepare import prepare, stream_for
from benchmarks.strategies import BASELINE, STRATEGIES, Strategy

SECRET = "benchmark-secret-" + "x" * 32
FRESH_EVERY = 10


def computing() -> list[Strategy]:
    """The strategies that neither wait on I/O nor need a server, baseline first."""
    return [s for s in STRATEGIES
            if not s.waits and s.service is None and s.store is None
            and s.missing() is None]


def run(requests: int = 20000, users: int = 1, warmup: int = 200) -> dict[str, Any]:
    """Per strategy: request time and session cost over the baseline (µs)."""
    strategies = computing()
    config = BenchConfig(secret=SECRET)
    prepared = asyncio.run(prepare(strategies, config, users, requests // FRESH_EVERY + 1))
    streams = {s.name: stream_for(s, config, prepared, warmup, requests, FRESH_EVERY, bare=True)
               for s in strategies}
    samples = asyncio.run(inprocess.run_streams(streams, requests, batch=requests))
    return inprocess.session_costs(samples, BASELINE.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--users", type=int, default=1, help="users the cookies rotate over")
    output.add_json_arguments(parser, "core.json")
    args = parser.parse_args()
    results = run(args.requests, args.users)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {args.requests} requests each")
    print(f"{'strategy':<18}{'median µs':>12}{'p99 µs':>10}   (cost over {BASELINE.name})")
    for name, entry in results.items():
        if name == BASELINE.name:
            total = entry["request_us"]
            print(f"{name + ' (total)':<18}{total['median']:>12.2f}{total['p99']:>10.2f}")
            continue
        cost = entry["session_cost_us"]
        print(f"{name:<18}{cost['median']:>12.2f}{cost['p99']:>10.2f}")
    path = output.json_path(args, "core.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
