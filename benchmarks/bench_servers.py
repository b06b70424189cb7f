"""End to end per server: no session, Starlette's signed cookie and jwt-warm behind
uvicorn + h11, uvicorn + httptools and granian, one worker each, wrk driving them.

Every (server, strategy) pair is served at once and measured in the same interleaved
rounds (order rotated), as in the suite, so drift lands on all alike. Behind a faster
server the session is a larger share of a request: the table gives jwt-warm's req/s
over none's and over Starlette's, each the median of per-round ratios.

    python -m benchmarks.bench_servers [--rounds 3] [--duration 2] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import http_load, output
from benchmarks.app import BenchConfig, temp_sqlite_path
from benchmarks.prepare import expected_for, prepare
from benchmarks.run import cpu_busy, load_average, machine
from benchmarks.serve import SERVERS
from benchmarks.strategies import by_name

DOCS_MARKER = "bench-servers"
NAMES = ("none", "starlette-signed", "jwt-warm")


def ratio(runs: dict[str, Any], a: str, b: str) -> float | None:
    """Median of per-round req/s ratios ``a / b`` (the same interleaved rounds)."""
    if a not in runs or b not in runs:
        return None
    pairs = zip(runs[a]["rps_rounds"], runs[b]["rps_rounds"], strict=True)
    return float(statistics.median(x / y for x, y in pairs if y))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"**Servers** (`{results['command']}`, {results['started_at']}, "
        f"{results['duration_s']:.0f} s; {m['cpu_model']}, {m['nproc']} cores; load average "
        f"{m['loadavg_at_start'][0]:.2f} at start; 1 worker each, {results['rounds']} "
        f"interleaved rounds of {results['duration']:g} s, {results['users']:,} users)",
        "",
        "| server | none req/s | starlette-signed req/s | jwt-warm req/s "
        "| jwt-warm / none | jwt-warm / starlette-signed |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for server, runs in results["runs"].items():
        cells = [f"{runs[name]['rps']:,.0f}" if name in runs else "n/a" for name in NAMES]
        for other in ("none", "starlette-signed"):
            value = ratio(runs, "jwt-warm", other)
            cells.append("n/a" if value is None else f"{value:.2f}x")
        lines.append(f"| {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_servers",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--duration", type=float, default=2.0, help="wrk seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="wrk warm-up seconds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--users", type=int, default=1000)
    output.add_json_arguments(parser, "servers.json")
    args = parser.parse_args(argv)
    if not http_load.wrk_available():
        print("wrk not found", file=sys.stderr)
        return 2
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    strategies = [by_name(name) for name in NAMES]
    load = http_load.Load(duration=args.duration, warmup=args.warmup)
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m benchmarks.bench_servers " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "users": args.users, "rounds": args.rounds,
        "duration": args.duration, "runs": {},
    }
    results["machine"]["cpu_busy_before_start"] = round(cpu_busy(), 3)
    results["machine"]["loadavg_at_start"] = load_average()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ajs-bench-")))
        config = BenchConfig(secret=secrets.token_urlsafe(32), pool_size=32,
                             cache_size=max(4096, 2 * args.users),
                             sqlite_path=temp_sqlite_path(), data_dir=str(workdir), urls={})
        stack.callback(lambda: Path(config.sqlite_path).unlink(missing_ok=True))
        prepared = asyncio.run(prepare(strategies, config, args.users))
        targets = []
        for server in servers:
            for strategy in strategies:
                cookies = prepared.cookies[strategy.name]
                cookie_file = http_load.write_cookie_file(
                    workdir / f"{strategy.name}.cookies", cookies)
                url = stack.enter_context(http_load.serve(
                    strategy.name, config, cookies[0], expected_for(strategy, prepared)[0],
                    server=server))
                targets.append(http_load.Target(f"{server} {strategy.name}", url, cookie_file))
        measured = http_load.measure_many(targets, load, args.rounds)
    for name, result in measured.items():
        http_load.check_clean(name, result)
        server, strategy_name = name.split(" ")
        results["runs"].setdefault(server, {})[strategy_name] = result
    results["machine"]["loadavg_at_end"] = load_average()
    results["duration_s"] = time.monotonic() - started
    output.report(args, "servers.json", results, markdown(results), DOCS_MARKER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
