"""Instructions per request, counted by valgrind: a figure the machine's load does not move.

The scenarios are :mod:`benchmarks.first_sight`'s (none, the floor, Starlette's
``SessionMiddleware``, this package warm, at first sight with full caches, the mix, and
the decrypt-only component). The program runs once per scenario under
``valgrind --tool=cachegrind`` and once more doing all the same set-up but no measured
request; the difference over the request count is the scenario's instructions per
request. Set-up (minting tokens, filling the caches) is identical in every run, so it
cancels out.

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
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import first_sight, output
from benchmarks.first_sight import SCENARIOS
from benchmarks.run import load_average, machine

DEFAULT_REQUESTS = 2000
DOCS_MARKER = "bench-instructions"
TOTAL = re.compile(rb"I\s+refs:\s+([\d,]+)")


async def workload(scenario: str, requests: int, measured: bool) -> None:
    """Build every scenario and warm up (the caches fill), then serve ``requests``
    requests of ``scenario`` when ``measured``."""
    built = first_sight.Scenarios(requests, shared=True)
    await built.warm_up()
    # The set-up's objects out of the collector's way: otherwise where a full collection
    # of them falls (inside the measured requests or not) moves every figure.
    gc.collect()
    gc.freeze()
    if measured:
        await first_sight.serve(built.apps[scenario], built.scopes[scenario])


def count(scenario: str, requests: int, measured: bool) -> int:
    """Instructions of one workload run under cachegrind."""
    with tempfile.TemporaryDirectory(prefix="ajs-instr-") as folder:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                   f"--cachegrind-out-file={Path(folder) / 'out'}",
                   sys.executable, "-m", "benchmarks.bench_instructions", "--workload",
                   scenario, "--requests", str(requests)]
        if not measured:
            command.append("--setup-only")
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(command, capture_output=True, env=env, check=False,
                              cwd=output.ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{scenario}: {done.stderr.decode(errors='replace')[-2000:]}")
        found = TOTAL.search(done.stderr)
        if found is None:
            raise RuntimeError(f"{scenario}: no instruction total in valgrind's output")
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
                               "tool": "valgrind --tool=cachegrind", "scenarios": {}}
    with ThreadPoolExecutor(jobs) as pool:
        base = pool.submit(count, "none", requests, False)
        runs = {name: pool.submit(count, name, requests, True) for name in wanted}
        setup = base.result()
        per_request = {name: (job.result() - setup) / requests for name, job in runs.items()}
    none = per_request["none"]
    for name, value in per_request.items():
        results["scenarios"][name] = {"instructions": round(value),
                                      "over_none": round(value - none)}
    over = {name: entry["over_none"] for name, entry in results["scenarios"].items()}
    ratios = {f"{name.replace('-', '_')}_to_starlette": value / over["starlette"]
              for name, value in over.items() if name not in ("none", "starlette")}
    if "warm" in over and over.get("floor", 0) > 0:
        ratios["warm_to_floor"] = over["warm"] / over["floor"]
    results["ratios"] = ratios
    results["machine"]["loadavg_at_end"] = load_average()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The instruction table: per request, and over no session."""
    scenarios = results["scenarios"]
    starlette = scenarios["starlette"]["over_none"]
    lines = [
        f"**Instructions per request** (`python -m benchmarks.bench_instructions`: "
        f"{results['requests']:,} requests per scenario under {results['tool']}, "
        "set-up subtracted; a Starlette route reading the user and three session values)",
        "",
        "| scenario | instructions | over none | / Starlette's |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in scenarios.items():
        ratio = "" if name == "none" else f"{entry['over_none'] / starlette:.2f}x"
        lines.append(f"| {name} | {entry['instructions']:,} | {entry['over_none']:,} "
                     f"| {ratio} |")
    ratios = results["ratios"]
    said = []
    if "warm_to_floor" in ratios:
        said.append(f"Warm is {ratios['warm_to_floor']:.2f}x the floor")
    if "first_sight_to_starlette" in ratios:
        said.append(f"first sight {ratios['first_sight_to_starlette']:.2f}x Starlette's "
                    "SessionMiddleware")
    lines += ["", "; ".join(said) + (". " if said else "") + "Instruction counts do not "
              "move with the machine's load; time per instruction differs between "
              "scenarios (crypto is dense).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--workload", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (none and starlette always run)")
    output.add_json_arguments(parser, "instructions.json")
    args = parser.parse_args()
    if args.workload:
        asyncio.run(workload(args.workload, args.requests, not args.setup_only))
        return
    results = run(args.requests, scenarios=args.scenarios.split(","))
    output.report(args, "instructions.json", results, markdown(results), DOCS_MARKER)


if __name__ == "__main__":
    main()
