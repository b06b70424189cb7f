"""Time per request at first sight, the way a busy process meets it, interleaved.

The scenarios are :mod:`benchmarks.first_sight`'s, each JWT one on its own app warmed
until its caches are full. The scenarios take turns request by request (order rotated
each round), so drift of a shared machine lands on all alike; each one's cost is its
median over ``none``'s, and the ratios to Starlette's ``SessionMiddleware`` are what
count (``bench_instructions`` counts instructions for the same scenarios).

    python -m benchmarks.bench_first_sight [--requests N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from benchmarks import first_sight, inprocess, output
from benchmarks.first_sight import SCENARIOS
from benchmarks.run import load_average, machine

DEFAULT_REQUESTS = 20000
DOCS_MARKER = "bench-first-sight"


async def measure(requests: int) -> dict[str, list[int]]:
    built = first_sight.Scenarios(requests)
    await built.warm_up()
    streams = {name: inprocess.Stream(inprocess.BenchApp(name, built.apps[name]), [], [],
                                      built.scopes[name]) for name in SCENARIOS}
    return await inprocess.measure(streams, requests)


def run(requests: int = DEFAULT_REQUESTS) -> dict[str, Any]:
    """Per scenario: request time and cost over ``none`` (µs), and ratios to Starlette."""
    results: dict[str, Any] = {"requests": requests, "machine": machine()}
    costs = inprocess.session_costs(asyncio.run(measure(requests)), "none")
    starlette = costs["starlette"]["session_cost_us"]["median"]
    for entry in costs.values():
        cost = entry["session_cost_us"]["median"]
        entry["ratio_to_starlette"] = cost / starlette if starlette > 0 else None
    results["scenarios"] = costs
    results["machine"]["loadavg_at_end"] = load_average()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The table: median cost over none (µs) and the ratio to Starlette's."""
    m = results["machine"]
    lines = [
        f"**First sight, timed** (`python -m benchmarks.bench_first_sight`: "
        f"{results['requests']:,} requests per scenario, interleaved request by request; "
        "a Starlette route reading the user and two session values; caches full)",
        "",
        "| scenario | request µs (median) | cost over none µs | p99 | / Starlette's |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, entry in results["scenarios"].items():
        cost = entry["session_cost_us"]
        ratio = entry.get("ratio_to_starlette")
        lines.append(f"| {name} | {entry['request_us']['median']:.2f} | "
                     f"{cost['median']:.2f} | {cost['p99']:.2f} | "
                     f"{'' if name == 'none' or ratio is None else f'{ratio:.2f}x'} |")
    lines += ["", f"Machine: {m.get('cpu_model', '?')}, {m.get('nproc', '?')} cores, "
              f"Python {m.get('python', '?')}; load average "
              f"{m['loadavg_at_start'][0]:.2f} at start, {m['loadavg_at_end'][0]:.2f} at end."
              if m.get("loadavg_at_start") and m.get("loadavg_at_end") else "", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    output.add_json_arguments(parser, "first_sight.json")
    args = parser.parse_args()
    results = run(args.requests)
    output.report(args, "first_sight.json", results, markdown(results), DOCS_MARKER)


if __name__ == "__main__":
    main()
