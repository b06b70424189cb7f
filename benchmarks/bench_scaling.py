"""Multi-worker scaling: req/s over 1, 2, 4, 8, 16 uvicorn workers, end to end.

The ``scaling`` strategies of the registry (none, Starlette's signed cookie, jwt-warm,
jwt-mix, db-postgres, starsessions-redis) are all served at once for each worker count,
N uvicorn processes each on one ``SO_REUSEPORT`` port (``benchmarks/serve.py``; not
``uvicorn --workers``, see there), and driven by wrk in interleaved rounds (order
rotated), as in the suite. wrk gets ``max(1, min(8, N // 2))`` threads and 16
connections per worker (at least 32); the database pool stays 32 connections in total,
split over the workers. Each worker has its own decoded-token cache, warmed by the
warm-up run; jwt-mix gets never-seen tokens as 1 request in 10, fresh each round.

Everything runs on this one machine: wrk, the workers, PostgreSQL and Redis share its
cores, so past half the cores the figures say more about the machine than about the
session. The defaults (3 rounds of 2 s) are sized for under 5 minutes on 16 cores:
per worker count, six servers, a warm-up run each and 18 timed runs of 2 s.

    python -m benchmarks.bench_scaling [--workers 1,2,4,8,16] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
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
from benchmarks.run import cpu_busy, fresh_files, load_average, machine, versions
from benchmarks.strategies import STRATEGIES, Strategy
from support.servers import Server, ServerUnavailable

DOCS_MARKER = "bench-scaling"
FRESH_EVERY = 10


def wrk_load(workers: int, duration: float, warmup: float) -> http_load.Load:
    return http_load.Load(duration=duration, warmup=warmup,
                          connections=max(32, 16 * workers),
                          threads=max(1, min(8, workers // 2)))


def measure_workers(strategies: list[Strategy], config: BenchConfig, prepared: Any,
                    workers: int, load: http_load.Load, rounds: int, workdir: Path,
                    note: Any) -> dict[str, dict[str, Any]]:
    """All ``strategies`` with ``workers`` processes each, interleaved rounds."""
    per_worker = dataclasses.replace(config, pool_size=max(2, -(-config.pool_size // workers)))
    with ExitStack() as stack:
        targets = []
        for strategy in strategies:
            cookies = prepared.cookies[strategy.name]
            cookie_file = http_load.write_cookie_file(
                workdir / f"{strategy.name}.cookies", cookies)
            try:
                url = stack.enter_context(http_load.serve(
                    strategy.name, per_worker, cookies[0],
                    expected_for(strategy, prepared)[0], workers))
            except Exception as exc:
                note(f"skip {strategy.name} x{workers}: {exc}")
                continue
            target = http_load.Target(strategy.name, url, cookie_file)
            if strategy.first_sight:
                target.fresh_files = fresh_files(strategy, per_worker, prepared, url, load,
                                                 rounds, FRESH_EVERY, workdir)
                target.fresh_every = FRESH_EVERY
            targets.append(target)
        results = http_load.measure_many(targets, load, rounds)
    out = {}
    for name, result in results.items():
        try:
            http_load.check_clean(name, result)
        except RuntimeError as exc:
            note(f"void {name} x{workers}: {exc}")
            continue
        out[name] = result
    return out


def ratio_rounds(runs: dict[str, Any], a: str, b: str) -> float | None:
    """Median of per-round req/s ratios ``a / b`` (the same interleaved rounds)."""
    import statistics

    if a not in runs or b not in runs:
        return None
    ra, rb = runs[a]["rps_rounds"], runs[b]["rps_rounds"]
    if len(ra) != len(rb) or not all(rb):
        return None
    return float(statistics.median(x / y for x, y in zip(ra, rb, strict=True)))


def markdown(results: dict[str, Any]) -> str:
    counts = [str(w) for w in results["workers"]]
    runs = results["runs"]
    names = [s.name for s in STRATEGIES if any(s.name in runs[w] for w in counts)]
    m = results["machine"]
    lines = [
        f"**Scaling** (`{results['command']}`, {results['started_at']}, "
        f"{results['duration_s']:.0f} s; {m['cpu_model']}, {m['nproc']} cores; CPUs "
        f"{m['cpu_busy_before_start']:.0%} busy before, load average "
        f"{m['loadavg_at_start'][0]:.2f} at start, {m['loadavg_at_end'][0]:.2f} at end; "
        f"{results['users']:,} users, {results['rounds']} interleaved rounds of "
        f"{results['duration']:g} s per strategy and worker count)",
        "",
        "| req/s (median of rounds) | " + " | ".join(f"{w} worker{'s' if w != '1' else ''}"
                                                    for w in counts) + " |",
        "|---|" + "---:|" * len(counts),
    ]
    for name in names:
        cells = [f"{runs[w][name]['rps']:,.0f}" if name in runs[w] else "n/a" for w in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| jwt-warm's req/s over (median of per-round ratios) | "
              + " | ".join(counts) + " |", "|---|" + "---:|" * len(counts)]
    for other in [n for n in names if n != "jwt-warm"]:
        cells = []
        for w in counts:
            value = ratio_rounds(runs[w], "jwt-warm", other)
            cells.append("n/a" if value is None else f"{value:.2f}x")
        lines.append(f"| {other} | " + " | ".join(cells) + " |")
    wrk = ", ".join(f"{w}: {results['load'][w]['threads']} threads / "
                    f"{results['load'][w]['connections']} connections" for w in counts)
    lines += ["", f"wrk by worker count: {wrk}. Database pool: 32 connections in total.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scaling",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8,16", help="worker counts")
    parser.add_argument("--duration", type=float, default=2.0, help="wrk seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="wrk warm-up seconds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--strategies", default=",".join(s.name for s in STRATEGIES
                                                         if s.scaling))
    output.add_json_arguments(parser, "scaling.json")
    args = parser.parse_args(argv)
    if not http_load.wrk_available():
        print("wrk not found", file=sys.stderr)
        return 2
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    names = {n.strip() for n in args.strategies.split(",") if n.strip()}
    wanted = [s for s in STRATEGIES if s.baseline or s.name in names]

    def note(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m benchmarks.bench_scaling " + " ".join(
            sys.argv[1:] if argv is None else argv),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(), "workers": counts, "users": args.users,
        "rounds": args.rounds, "duration": args.duration, "skipped": {},
        "load": {str(w): dataclasses.asdict(wrk_load(w, args.duration, args.warmup))
                 for w in counts},
        "runs": {},
    }
    results["machine"]["cpu_busy_before_start"] = round(cpu_busy(), 3)
    results["machine"]["loadavg_at_start"] = load_average()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ajs-bench-")))
        for strategy in list(wanted):
            reason = strategy.missing()
            if reason:
                wanted.remove(strategy)
                results["skipped"][strategy.name] = reason
        servers: dict[str, Server] = {}
        for service in dict.fromkeys(sv for st in wanted for sv in st.all_services):
            try:
                server = service.server()
                stack.callback(server.close)
                server.start()
                servers[service.name] = server
            except ServerUnavailable as exc:
                for strategy in [st for st in wanted if service in st.all_services]:
                    wanted.remove(strategy)
                    results["skipped"][strategy.name] = str(exc)
        results["versions"] = versions(servers)
        config = BenchConfig(secret=secrets.token_urlsafe(32), pool_size=32,
                             cache_size=max(4096, 2 * args.users),
                             sqlite_path=temp_sqlite_path(), data_dir=str(workdir),
                             urls={name: server.url for name, server in servers.items()})
        stack.callback(lambda: Path(config.sqlite_path).unlink(missing_ok=True))
        prepared = asyncio.run(prepare(wanted, config, args.users))
        for workers in counts:
            note(f"{workers} worker(s) ...")
            results["runs"][str(workers)] = measure_workers(
                wanted, config, prepared, workers,
                wrk_load(workers, args.duration, args.warmup), args.rounds, workdir, note)
    results["machine"]["loadavg_at_end"] = load_average()
    results["duration_s"] = time.monotonic() - started
    if len(os.sched_getaffinity(0)) < max(counts):
        results["note"] = (f"{max(counts)} workers on {len(os.sched_getaffinity(0))} cores: "
                           "more workers than cores")
    output.report(args, "scaling.json", results, markdown(results), DOCS_MARKER)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
