"""Tight loops: the per-request session cost of every strategy that only computes (no
store server, no I/O wait), each on its own with hot caches, in two scenarios:

- **one cookie, session untouched**: the same cookie every request, and a route that
  answers without reading the session. The middleware still parses and decodes the
  cookie, but nothing marks the session accessed, so the response side (``Vary``,
  re-issue checks) never runs. The best case, and what a micro-benchmark that replays
  one request measures.
- **1,000 users, session accessed**: cookies of ``--users`` users in turn, and the
  suite's route, which reads the user (``auth(request)`` / ``request.session``: the
  session is marked accessed and the response gets ``Vary: Cookie``).

Each strategy's middleware wraps a bare ASGI endpoint (no routing) and serves
``--requests`` requests through the in-process harness, in ``ROUNDS`` runs of
requests / ROUNDS in a row (order rotated each round, so that drift of a shared machine
lands on all alike): the code's own cost with hot caches, the figure a micro-benchmark
of another library would give. The suite
(``benchmarks.run``) interleaves the strategies request by request instead.

    python -m benchmarks.bench_core [--requests N] [--users N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
from typing import Any

from benchmarks import inprocess, output
from benchmarks.app import BenchConfig
from benchmarks.prepare import prepare, stream_for
from benchmarks.run import load_average, machine
from benchmarks.strategies import BASELINE, STRATEGIES, Strategy

SECRET = "benchmark-secret-" + "x" * 32
FRESH_EVERY = 10
ROUNDS = 5  # each strategy runs requests / ROUNDS in a row per round, order rotated
SCENARIOS = {
    "untouched": "one cookie, session untouched (the route does not read it)",
    "accessed": "{users:,} users, session accessed (the route reads the user)",
}
DOCS_MARKER = "bench-core"


def computing() -> list[Strategy]:
    """The strategies that neither wait on I/O nor need a server, on Starlette, baseline
    first."""
    return [s for s in STRATEGIES
            if not s.waits and not s.all_services and s.framework == "starlette"
            and s.missing() is None]


def scenario(requests: int, users: int, untouched: bool, warmup: int
             ) -> dict[str, dict[str, Any]]:
    """Per strategy: request time and session cost over the baseline (µs)."""
    strategies = computing()
    with tempfile.TemporaryDirectory(prefix="ajs-bench-") as data_dir:
        config = BenchConfig(secret=SECRET, data_dir=data_dir,
                             cache_size=max(4096, 2 * users))
        prepared = asyncio.run(prepare(strategies, config, users,
                                       requests // FRESH_EVERY + 1))
        streams = {s.name: stream_for(s, config, prepared, warmup, requests, FRESH_EVERY,
                                      bare=True, untouched=untouched)
                   for s in strategies}
        samples = asyncio.run(inprocess.run_streams(streams, requests,
                                                    batch=max(1, requests // ROUNDS)))
    return inprocess.session_costs(samples, BASELINE.name)


def run(requests: int = 20000, users: int = 1000, warmup: int = 200) -> dict[str, Any]:
    """Both scenarios: ``{"untouched": {...}, "accessed": {...}, "scenarios": ...}``."""
    results: dict[str, Any] = {
        "scenarios": {"untouched": SCENARIOS["untouched"],
                      "accessed": SCENARIOS["accessed"].format(users=users)},
        "requests": requests,
        "users": users,
        "machine": machine(),
        "untouched": scenario(requests, 1, True, warmup),
        "accessed": scenario(requests, users, False, warmup),
    }
    results["machine"]["loadavg_at_end"] = load_average()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The tight-loop table: cost over the baseline per scenario, median and p99."""
    untouched, accessed = results["untouched"], results["accessed"]
    names = results["scenarios"]
    lines = [
        f"**Tight loops** (`python -m benchmarks.bench_core`: each strategy alone, "
        f"{results['requests']:,} requests in {ROUNDS} rotated runs of "
        f"{results['requests'] // ROUNDS:,} in a row, middleware around a bare ASGI "
        f"endpoint; cost over {BASELINE.name}, µs)",
        "",
        "| strategy | untouched: median | p99 | accessed: median | p99 | mean |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in accessed:
        if name == BASELINE.name:
            continue
        a, b = untouched.get(name, {}).get("session_cost_us"), accessed[name]["session_cost_us"]
        first = f"{a['median']:.2f} | {a['p99']:.2f}" if a else "n/a | n/a"
        lines.append(f"| {name} | {first} | {b['median']:.2f} | {b['p99']:.2f} "
                     f"| {b['mean']:.2f} |")
    base_a = untouched[BASELINE.name]["request_us"]["median"]
    base_b = accessed[BASELINE.name]["request_us"]["median"]
    m = results.get("machine")
    where = (f" Machine: {m['cpu_model']}, {m['nproc']} cores, Python {m['python']}; load "
             f"average {m['loadavg_at_start'][0]:.2f} at start, "
             f"{m['loadavg_at_end'][0]:.2f} at end." if m and m.get("loadavg_at_start")
             and m.get("loadavg_at_end") else "")
    lines += ["", f"*untouched*: {names['untouched']}; *accessed*: {names['accessed']}. "
              f"The {BASELINE.name} request itself takes {base_a:.2f} µs (untouched) and "
              f"{base_b:.2f} µs (accessed). jwt-mix: 1 request in {FRESH_EVERY} carries a "
              "token never seen before." + where, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--users", type=int, default=1000,
                        help="users the cookies rotate over in the 'accessed' scenario")
    output.add_json_arguments(parser, "core.json")
    args = parser.parse_args()
    results = run(args.requests, args.users)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {args.requests} requests each")
    output.report(args, "core.json", results, markdown(results), DOCS_MARKER)


if __name__ == "__main__":
    main()
