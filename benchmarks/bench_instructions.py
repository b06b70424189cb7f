"""Instructions per request, counted by valgrind: a figure the machine's load does not move.

The scenarios are :mod:`benchmarks.first_sight`'s (none, the floor, Starlette's
``SessionMiddleware``, the least a warm session can do, this package warm, at first
sight with full caches, the mix, and the decrypt-only component). The program runs
once per scenario under ``valgrind --tool=callgrind``: it builds every scenario and
warms them up (the caches fill) uncounted, then serves the measured requests inside
``sys.call_tracing``, the one call valgrind counts (``--toggle-collect``). The requests
never wait on anything, so they run as one coroutine step, with no event loop. The
count is exact and repeatable to a few instructions per run, whatever the set-up did.

    python -m benchmarks.bench_instructions [--requests N] [--json PATH | --publish]
    python -m benchmarks.bench_instructions --workload SCENARIO --requests N  # one run

Needs valgrind (Debian's ``valgrind`` package); runs the scenarios two at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks import first_sight, output
from benchmarks.first_sight import SCENARIOS
from benchmarks.run import load_average, machine

DEFAULT_REQUESTS = 2000
DOCS_MARKER = "bench-instructions"
TOTAL = re.compile(rb"Collected\s*:\s*([\d,]+)")
# The C function behind sys.call_tracing: valgrind counts only what runs inside it.
COUNTED = "_PyEval_CallTracing"


async def prepare(requests: int) -> first_sight.Scenarios:
    built = first_sight.Scenarios(requests, shared=True)
    await built.warm_up()
    return built


def workload(scenario: str, requests: int) -> None:
    """Build every scenario and warm up (the caches fill), then serve ``requests``
    requests of ``scenario`` inside ``sys.call_tracing``: what valgrind counts."""
    built = asyncio.run(prepare(requests))
    # The set-up's objects out of the collector's way: otherwise a full collection of
    # them inside the measured requests would count as theirs.
    gc.collect()
    gc.freeze()
    step = first_sight.serve(built.apps[scenario], built.scopes[scenario]).send
    try:
        sys.call_tracing(step, (None,))
    except StopIteration:
        return
    raise RuntimeError(f"{scenario}: a request waited on something; nothing to count")


def count(scenario: str, requests: int) -> int:
    """Instructions valgrind counts in one workload run (the measured requests)."""
    command = ["valgrind", "--tool=callgrind", f"--toggle-collect={COUNTED}",
               "--callgrind-out-file=/dev/null", sys.executable, "-m",
               "benchmarks.bench_instructions", "--workload", scenario,
               "--requests", str(requests)]
    env = dict(os.environ, PYTHONHASHSEED="0")
    done = subprocess.run(command, capture_output=True, env=env, check=False,
                          cwd=output.ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{scenario}: {done.stderr.decode(errors='replace')[-2000:]}")
    found = TOTAL.search(done.stderr)
    if found is None:
        raise RuntimeError(f"{scenario}: no instruction count in valgrind's output")
    return int(found.group(1).replace(b",", b""))


def run(requests: int = DEFAULT_REQUESTS, jobs: int = 2,
        scenarios: Sequence[str] = SCENARIOS) -> dict[str, Any]:
    """Instructions per request of each of ``scenarios`` (``none`` and ``starlette``
    always among them), and each one's cost over ``none``."""
    wanted = [name for name in SCENARIOS
              if name in scenarios or name in ("none", "starlette")]
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions needs valgrind (apt-get install valgrind)")
    results: dict[str, Any] = {"requests": requests, "machine": machine(),
                               "tool": "valgrind --tool=callgrind", "scenarios": {}}
    with ThreadPoolExecutor(jobs) as pool:
        runs = {name: pool.submit(count, name, requests) for name in wanted}
        per_request = {name: job.result() / requests for name, job in runs.items()}
    none = per_request["none"]
    for name, value in per_request.items():
        results["scenarios"][name] = {"instructions": round(value),
                                      "over_none": round(value - none)}
    over = {name: entry["over_none"] for name, entry in results["scenarios"].items()}
    results["ratios"] = ratios(over)
    results["machine"]["loadavg_at_end"] = load_average()
    return results


def ratios(over: dict[str, int]) -> dict[str, float]:
    """From each scenario's instructions over none: each one's ratio to Starlette's,
    and warm's and least's to the floor's."""
    found = {f"{name.replace('-', '_')}_to_starlette": value / over["starlette"]
             for name, value in over.items() if name not in ("none", "starlette")}
    if over.get("floor", 0) > 0:
        for name in ("warm", "least"):
            if name in over:
                found[f"{name}_to_floor"] = over[name] / over["floor"]
    return found


def markdown(results: dict[str, Any]) -> str:
    """The instruction table: per request, and over no session."""
    scenarios = results["scenarios"]
    starlette = scenarios["starlette"]["over_none"]
    lines = [
        f"**Instructions per request** (`python -m benchmarks.bench_instructions`: "
        f"{results['requests']:,} requests per scenario under {results['tool']}, "
        "only the requests counted; a Starlette route reading the user and two session "
        "values)",
        "",
        "| scenario | instructions | over none | / Starlette's |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in scenarios.items():
        ratio = "" if name == "none" else f"{entry['over_none'] / starlette:.2f}x"
        lines.append(f"| {name} | {entry['instructions']:,} | {entry['over_none']:,} "
                     f"| {ratio} |")
    found = results["ratios"]
    said = []
    if "warm_to_floor" in found:
        said.append(f"Warm is {found['warm_to_floor']:.2f}x the floor")
    if "least_to_floor" in found:
        said.append(f"least (the bound under warm) is {found['least_to_floor']:.2f}x it")
    if "first_sight_to_starlette" in found:
        said.append(f"first sight is {found['first_sight_to_starlette']:.2f}x Starlette's "
                    "SessionMiddleware")
    sentence = "; ".join(said)
    lines += ["", sentence[:1].upper() + sentence[1:] + (". " if said else "")
              + "Instruction counts do not move with the machine's load; time per "
              "instruction differs between scenarios (crypto is dense).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--workload", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (none and starlette always run)")
    output.add_json_arguments(parser, "instructions.json")
    args = parser.parse_args()
    if args.workload:
        workload(args.workload, args.requests)
        return
    results = run(args.requests, scenarios=args.scenarios.split(","))
    output.report(args, "instructions.json", results, markdown(results), DOCS_MARKER)


if __name__ == "__main__":
    main()
