"""Import time: ``asgi_jwt_session`` against Starlette's ``SessionMiddleware``.

Each figure is a fresh interpreter running ``import MODULE`` minus a fresh interpreter
running nothing, in interleaved rounds (bare, this package, Starlette, order rotated
each round, so drift lands on all alike); the median over rounds. Both imports include
Starlette's own modules they pull in. Goal: this package <= 1.3x Starlette's.

    python -m benchmarks.bench_import [--rounds N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks import output

MODULES = {
    "bare": "",
    "asgi_jwt_session": "import asgi_jwt_session",
    "starlette.middleware.sessions": "import starlette.middleware.sessions",
}
GOAL = 1.3


# Bytecode as an installed package has it: written once, then read (installed packages
# get theirs at install time; a source checkout would otherwise compile every run).
ENVIRONMENT = {key: value for key, value in os.environ.items()
               if key != "PYTHONDONTWRITEBYTECODE"}


def start_ms(code: str) -> float:
    """Wall time of ``python -c code`` in a fresh interpreter (no user site), ms."""
    command = [sys.executable, "-s", "-c", code]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, env=ENVIRONMENT)
    return (time.perf_counter() - t0) * 1000


def run(rounds: int = 30) -> dict[str, Any]:
    """Median start time per module over ``rounds``, the import time (minus the bare
    start) and the ratio of this package's to Starlette's."""
    names = list(MODULES)
    for name in names:  # warm the file system cache and the bytecode
        start_ms(MODULES[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(start_ms(MODULES[name]))
    bare = statistics.median(samples["bare"])
    results: dict[str, Any] = {"rounds": rounds, "python": sys.version.split()[0],
                               "bare_start_ms": bare, "import_ms": {}}
    for name in names[1:]:
        results["import_ms"][name] = statistics.median(samples[name]) - bare
    ours = results["import_ms"]["asgi_jwt_session"]
    theirs = results["import_ms"]["starlette.middleware.sessions"]
    results["ratio"] = ours / theirs if theirs > 0 else None
    results["goal"] = GOAL
    results["met"] = None if results["ratio"] is None else results["ratio"] <= GOAL
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    output.add_json_arguments(parser, "import.json")
    args = parser.parse_args()
    results = run(args.rounds)
    print(f"Python {results['python']}, {args.rounds} rounds, bare interpreter start "
          f"{results['bare_start_ms']:.1f} ms (subtracted)")
    for name, ms in results["import_ms"].items():
        print(f"import {name:<32}{ms:>8.1f} ms")
    ratio = results["ratio"]
    verdict = {True: "met", False: "missed", None: "not measured"}[results["met"]]
    print("ratio asgi_jwt_session / starlette.middleware.sessions: "
          + (f"{ratio:.2f}x" if ratio is not None else "n/a")
          + f" (goal <= {GOAL:g}x: {verdict})")
    path = output.json_path(args, "import.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
