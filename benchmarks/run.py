"""The benchmark suite, in one command: ``python -m benchmarks.run --quick`` (or ``--full``).

Starts the servers its strategies need (temp dirs, loopback), fills their stores with
the same users, mints every strategy's cookies through its own login path, then
measures, all in one run: the session cost in process, inside uvicorn (its h11 protocol
over an in-memory transport), end to end through uvicorn + wrk and with the servers
farther away (delay proxy). Scaling over workers is ``benchmarks/bench_scaling.py``. Writes
``latest.json``, ``latest.md`` and ``latest.png`` to ``benchmarks/results/tmp/`` (ignored
by git); ``--publish`` writes the tracked ``benchmarks/results/`` and the results
section of ``docs/benchmarks.md`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import os
import platform
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm  # type: ignore[import-untyped]

from benchmarks import bench_server, http_load, inprocess, output, report
from benchmarks.app import BenchConfig, mint_cookies, temp_sqlite_path
from benchmarks.delay_proxy import DelayProxy, calibrate
from benchmarks.prepare import Prepared, expected_for, prepare, stream_for
from benchmarks.strategies import BASELINE, REFERENCES, STRATEGIES, Service, Strategy
from support.servers import Server, ServerUnavailable, first_line, free_port


@dataclasses.dataclass
class Settings:
    mode: str
    users: int
    iterations: int
    warmup: int  # in-process warm-up requests (``warm_all`` strategies see every user once)
    rtt_iterations: int
    rtt_ms: tuple[float, ...]
    load: http_load.Load
    rtt_load: http_load.Load
    pool_size: int = 32
    fresh_every: int = 10  # ``first_sight`` strategies: 1 request in N carries a new token
    batch: int = 1  # in process: requests per strategy before switching to the next
    rounds: int = 3  # end to end: interleaved wrk runs per strategy
    rtt_rounds: int = 2
    server_iterations: int = 3000  # inside uvicorn: timed requests per strategy

    @classmethod
    def quick(cls) -> Settings:
        return cls("quick", users=1000, iterations=2000, warmup=300, rtt_iterations=300,
                   rtt_ms=(0.5, 2.0), load=http_load.Load(duration=2, warmup=1),
                   rtt_load=http_load.Load(duration=2, warmup=1), rounds=4, rtt_rounds=2,
                   server_iterations=3000)

    @classmethod
    def full(cls) -> Settings:
        return cls("full", users=10000, iterations=20000, warmup=2000, rtt_iterations=2000,
                   rtt_ms=(0.5, 2.0), load=http_load.Load(duration=5, warmup=3),
                   rtt_load=http_load.Load(duration=5, warmup=2), rounds=5, rtt_rounds=3,
                   server_iterations=10000)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=(__doc__ or "").split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the short run (default)")
    mode.add_argument("--full", action="store_true", help="longer runs, 10k users")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", type=Path, default=output.LOCAL,
                       help=f"results directory (default {output.LOCAL.relative_to(output.ROOT)})")
    where.add_argument("--publish", action="store_true",
                       help="write the tracked benchmarks/results/ and docs/benchmarks.md")
    parser.add_argument("--strategies", default=",".join(s.name for s in STRATEGIES),
                        help=f"comma-separated subset ({BASELINE.name} is always measured)")
    parser.add_argument("--users", type=int, help="users in the pool")
    parser.add_argument("--iterations", type=int, help="timed in-process requests per strategy")
    parser.add_argument("--duration", type=int, help="wrk seconds per strategy and round")
    parser.add_argument("--rounds", type=int, help="interleaved wrk rounds per strategy")
    parser.add_argument("--connections", type=int, help="wrk connections")
    parser.add_argument("--threads", type=int, help="wrk threads")
    parser.add_argument("--rtt-ms", help="added round trips, e.g. 0.5,2 (empty: none)")
    parser.add_argument("--fresh-every", type=int, help="1 first-sight token in N")
    parser.add_argument("--no-http", action="store_true", help="skip uvicorn + wrk")
    parser.add_argument("--no-server", action="store_true",
                        help="skip the inside-uvicorn (in-memory transport) measurement")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for the CPUs to be idle (<10%% busy)")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    s = Settings.full() if args.full else Settings.quick()
    if args.users:
        s.users = args.users
    if args.iterations:
        s.iterations = args.iterations
        s.rtt_iterations = max(50, args.iterations // 7)
        s.server_iterations = max(50, args.iterations)
    if args.duration:
        s.load.duration = args.duration
        s.rtt_load.duration = args.duration
    if args.rounds:
        s.rounds = args.rounds
        s.rtt_rounds = max(1, args.rounds - 1)
    for load in (s.load, s.rtt_load):
        if args.connections:
            load.connections = args.connections
        if args.threads:
            load.threads = args.threads
    if args.rtt_ms is not None:
        s.rtt_ms = tuple(float(x) for x in args.rtt_ms.split(",") if x.strip())
    if args.fresh_every:
        s.fresh_every = args.fresh_every
    s.pool_size = max(s.pool_size, s.load.connections)
    return s


# Machine and versions

def machine() -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown CPU"
    memory_gb = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gb": memory_gb,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "loadavg_at_start": load_average(),
    }


def cpu_busy(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat); 0.0 if unknown."""
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    total = total1 - total0
    return 0.0 if total <= 0 else 1 - (idle1 - idle0) / total


def wait_quiet(limit: float, note: Callable[[str], None]) -> float:
    """Wait (up to ``limit`` s) for 3 s in a row under 10% CPU; the last busy fraction."""
    deadline = time.monotonic() + limit
    quiet = 0
    busy = cpu_busy()
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if busy < 0.10 else 0
        if quiet < 3:
            busy = cpu_busy()
    if busy >= 0.10:
        note(f"machine still {busy:.0%} busy after waiting {limit:.0f} s; going ahead")
    return busy


def load_average() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def versions(servers: dict[str, Server]) -> dict[str, str]:
    """Library versions, each started server's (``<service>-server``), wrk's, the commit."""
    out: dict[str, str] = {}
    for dist in ("asgi-jwt-session", "starlette", "uvicorn", "h11", "jwcrypto",
                 "cryptography", "itsdangerous", "databases", "SQLAlchemy", "aiosqlite",
                 "asyncpg", "redis", "orjson", "starsessions", "fastapi", "fastapi-users",
                 "fastapi-users-db-sqlalchemy", "PyJWT"):
        with suppress(importlib.metadata.PackageNotFoundError):
            out[dist.lower()] = importlib.metadata.version(dist)
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    for name, server in servers.items():
        version = server.version()
        if version:
            out[f"{name}-server"] = version
    line = first_line(["wrk", "-v"])
    if line:
        out["wrk"] = " ".join(line.split()[:2])
    commit = first_line(["git", "-C", str(output.ROOT), "rev-parse", "--short", "HEAD"])
    if commit:
        out["repo_commit"] = commit
    return out


# In process

def inprocess_costs(strategies: Sequence[Strategy], config: BenchConfig, prepared: Prepared,
                    s: Settings, warmup: int, iterations: int) -> dict[str, dict[str, Any]]:
    """Request time and session cost per strategy, all interleaved with the baseline."""
    streams = {st.name: stream_for(st, config, prepared, warmup, iterations, s.fresh_every)
               for st in [BASELINE, *strategies]}
    samples = asyncio.run(inprocess.run_streams(streams, iterations, s.batch))
    return inprocess.session_costs(samples, BASELINE.name)


def inprocess_phase(strategies: Sequence[Strategy], config: BenchConfig, prepared: Prepared,
                    s: Settings) -> dict[str, dict[str, Any]]:
    """Per strategy: what it does, request time, session cost, ratios to the references.

    The strategies that only compute and those that wait on I/O are measured in two
    groups, each interleaved with its own baseline: mixed in one rotation, the core idles
    while a database request waits and the next computing strategy starts cold (it read
    ~2x slower here, the JWT cold path and Starlette's HMAC the most).
    """
    others = [st for st in strategies if not st.baseline]
    computing = [st for st in others if not st.waits]
    waiting = [st for st in others if st.waits]
    costs = inprocess_costs(computing, config, prepared, s, s.warmup, s.iterations)
    if waiting:
        group = inprocess_costs(waiting, config, prepared, s, s.warmup, s.iterations)
        group.pop(BASELINE.name)
        costs.update(group)
    inprocess.add_ratios(costs, REFERENCES, skip=[BASELINE.name])
    does = {st.name: st.does for st in strategies}
    return {name: {"does": does[name], **costs[name]} for name in ordered(costs)}


def ordered(names: Iterable[str]) -> list[str]:
    """``names`` in registry order."""
    wanted = set(names)
    return [s.name for s in STRATEGIES if s.name in wanted]


# HTTP

def http_phase(strategies: Sequence[Strategy], config: BenchConfig, prepared: Prepared,
               load: http_load.Load, rounds: int, fresh_every: int, workdir: Path,
               step: Callable[[str], None], note: Callable[[str], None],
               skipped: dict[str, str], tag: str = "") -> dict[str, dict[str, Any]]:
    """All ``strategies`` served at once (one uvicorn each), measured in interleaved
    rounds; a ``first_sight`` strategy also gets never-seen tokens (see ``fresh_files``)."""
    out: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        step(f"http{tag}: start + warm up")
        targets: list[http_load.Target] = []
        for strategy in strategies:
            name = strategy.name
            cookies = prepared.cookies[name]
            cookie_file = http_load.write_cookie_file(workdir / f"{name}.cookies", cookies)
            try:
                url = stack.enter_context(http_load.serve(
                    name, config, cookies[0], expected_for(strategy, prepared)[0]))
                target = http_load.Target(name, url, cookie_file)
                if strategy.first_sight:
                    target.fresh_files = fresh_files(strategy, config, prepared, url, load,
                                                     rounds, fresh_every, workdir)
                    target.fresh_every = fresh_every
            except Exception as exc:
                note(f"skip http {name}{tag}: {exc}")
                skipped[f"http {name}{tag}"] = str(exc)[:300]
                continue
            targets.append(target)
        counter = iter(range(1, rounds + 1))
        results = http_load.measure_many(
            targets, load, rounds, tick=lambda: step(f"http{tag}: round {next(counter)}"))
    for name, result in results.items():
        try:
            http_load.check_clean(name, result)
        except RuntimeError as exc:
            note(f"void http {name}{tag}: {exc}")
            skipped[f"http {name}{tag}"] = str(exc)[:300]
            continue
        out[name] = result
    return out


def fresh_files(strategy: Strategy, config: BenchConfig, prepared: Prepared, url: str,
                load: http_load.Load, rounds: int, fresh_every: int, workdir: Path
                ) -> list[Path]:
    """One file of never-seen tokens per round, enough for 1 request in ``fresh_every``
    at twice the rate a 1 s probe run reaches."""
    probe = http_load.run_wrk(url, workdir / f"{strategy.name}.cookies", 1, load)
    per_round = int(probe["rps"] * 2 * load.duration / fresh_every) + 50
    pool = prepared.users
    users = [pool[i % len(pool)] for i in range(per_round * rounds)]
    fresh = asyncio.run(mint_cookies(strategy.build(config), users))
    return [
        http_load.write_cookie_file(workdir / f"{strategy.name}-fresh-{r}.cookies",
                                    fresh[r * per_round:(r + 1) * per_round])
        for r in range(rounds)
    ]


# The servers farther away

async def probe_added_rtt(services: Sequence[Service], direct: BenchConfig,
                          proxied: BenchConfig) -> dict[str, float]:
    """What the proxy adds for each service's own client: median of 200 sequential round
    trips, proxied minus direct, ms."""
    out: dict[str, float] = {}
    for service in services:
        near = await service.probe(direct.urls[service.name])
        far = await service.probe(proxied.urls[service.name])
        out[service.name] = far - near
    return out


def rtt_phase(strategies: Sequence[Strategy], config: BenchConfig, prepared: Prepared,
              s: Settings, servers: dict[str, Server], reference_costs: dict[str, Any],
              do_http: bool, workdir: Path, step: Callable[[str], None],
              note: Callable[[str], None], skipped: dict[str, str]) -> dict[str, Any]:
    """The strategies that use a service, again with ``s.rtt_ms`` added to each round
    trip to it (in process, and end to end when ``do_http``)."""
    services = list(dict.fromkeys(sv for st in strategies for sv in st.all_services))
    out: dict[str, Any] = {}
    for rtt in s.rtt_ms:
        step(f"rtt {rtt:g} ms in process")
        one_way, measured = calibrate(rtt)
        with ExitStack() as proxies:
            rtt_config = dataclasses.replace(config, urls=dict(config.urls))
            for service in services:
                server = servers[service.name]
                proxy = proxies.enter_context(DelayProxy(server.port, one_way, free_port()))
                rtt_config.urls[service.name] = server.url.replace(f":{server.port}/",
                                                                   f":{proxy.port}/")
            costs = inprocess_costs(strategies, rtt_config, prepared, s, min(s.warmup, 100),
                                    s.rtt_iterations)
            costs.pop(BASELINE.name)
            inprocess.add_ratios(costs, REFERENCES, reference_costs)
            probes = asyncio.run(probe_added_rtt(services, config, rtt_config))
            block: dict[str, Any] = {
                "rtt_ms": rtt,
                "measured_added_ms": next(iter(probes.values()), measured),
                "probe_added_ms": probes, "echo_added_ms": measured,
                "proxy_one_way_ms": one_way,
                "strategies": {name: costs[name] for name in ordered(costs)},
            }
            if do_http:
                block["http"] = http_phase(strategies, rtt_config, prepared, s.rtt_load,
                                           s.rtt_rounds, s.fresh_every, workdir, step, note,
                                           skipped, tag=f" +{rtt:g}ms")
            out[f"{rtt:g}"] = block
    return out


# The run

def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_from(args)
    known = {st.name: st for st in STRATEGIES}
    names = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown strategies: {', '.join(unknown)}; known: {', '.join(known)}",
              file=sys.stderr)
        return 2
    wanted = [st for st in STRATEGIES if st.baseline or st.name in names]
    do_http = not args.no_http
    if do_http and not http_load.wrk_available():
        print("wrk not found: end-to-end measurements skipped", file=sys.stderr)
        do_http = False

    rtts = s.rtt_ms if any(st.all_services for st in wanted) else ()
    steps = ["servers", "stores and cookies", "in process"]
    if not args.no_server:
        steps.append("inside uvicorn")
    if do_http:
        steps += ["http: start + warm up"] + [f"http: round {i}" for i in range(s.rounds)]
    for rtt in rtts:
        steps.append(f"rtt {rtt:g} ms in process")
        if do_http:
            steps += [f"http +{rtt:g}ms: start + warm up"]
            steps += [f"http +{rtt:g}ms: round {i}" for i in range(s.rtt_rounds)]
    steps.append("report")

    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": 3,
        "mode": s.mode,
        "command": "python -m benchmarks.run " + shlex.join(sys.argv[1:] if argv is None
                                                           else list(argv)),
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "settings": {
            "users": s.users, "iterations": s.iterations, "warmup": s.warmup,
            "batch": s.batch, "rtt_iterations": s.rtt_iterations, "rtt_ms": list(s.rtt_ms),
            "pool_size": s.pool_size, "fresh_every": s.fresh_every,
            "rounds": s.rounds, "rtt_rounds": s.rtt_rounds,
            "server_iterations": s.server_iterations,
            "load": dataclasses.asdict(s.load), "rtt_load": dataclasses.asdict(s.rtt_load),
            "uvicorn": "benchmarks/serve.py: 1 worker, asyncio loop, h11, no access log",
        },
        "skipped": {},
        "strategies": {},
        "http": {},
    }
    skipped: dict[str, str] = results["skipped"]

    bar = tqdm(total=len(steps), unit="step", disable=args.no_progress, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}]")
    started_steps: list[str] = []

    def step(label: str) -> None:
        if started_steps:
            bar.update(1)
        started_steps.append(label)
        bar.set_description(label)

    def note(message: str) -> None:
        tqdm.write(message, file=sys.stderr)

    def skip(strategy: Strategy, reason: str) -> None:
        if strategy in wanted:
            wanted.remove(strategy)
            skipped[strategy.name] = reason
            note(f"skip {strategy.name}: {reason}")

    if args.wait_quiet:
        wait_quiet(args.wait_quiet, note)
    results["machine"]["cpu_busy_before_start"] = round(cpu_busy(), 3)
    results["machine"]["loadavg_at_start"] = load_average()
    if results["machine"]["cpu_busy_before_start"] > 0.10:
        note(f"note: the machine was {results['machine']['cpu_busy_before_start']:.0%} busy "
             "before the run; other work shows up in the numbers (see --wait-quiet)")

    out_dir: Path = output.PUBLISHED if args.publish else args.out
    with ExitStack() as stack:
        stack.callback(bar.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ajs-bench-")))
        step("servers")
        for strategy in list(wanted):
            reason = strategy.missing()
            if reason:
                skip(strategy, reason)
        servers: dict[str, Server] = {}
        for service in dict.fromkeys(sv for st in wanted for sv in st.all_services):
            try:
                server = service.server()
                stack.callback(server.close)
                server.start()
                servers[service.name] = server
            except ServerUnavailable as exc:
                for strategy in [st for st in wanted if service in st.all_services]:
                    skip(strategy, f"{service.name} could not be started: {exc}")
        results["versions"] = versions(servers)

        config = BenchConfig(
            secret=secrets.token_urlsafe(32), pool_size=s.pool_size,
            cache_size=max(4096, s.users * 2), sqlite_path=temp_sqlite_path(),
            data_dir=str(workdir), urls={name: server.url for name, server in servers.items()},
        )
        stack.callback(lambda: Path(config.sqlite_path).unlink(missing_ok=True))
        results["settings"]["cache_size"] = config.cache_size

        step("stores and cookies")
        prepared = asyncio.run(prepare(wanted, config, s.users,
                                       s.iterations // s.fresh_every + 2))

        step("in process")
        results["strategies"] = inprocess_phase(wanted, config, prepared, s)

        if not args.no_server:
            step("inside uvicorn")
            results["server"] = bench_server.measure(wanted, config, prepared,
                                                     s.server_iterations, s.warmup,
                                                     s.fresh_every)

        if do_http:
            results["http"] = http_phase(wanted, config, prepared, s.load, s.rounds,
                                         s.fresh_every, workdir, step, note, skipped)

        remote = [st for st in wanted if st.all_services]
        if rtts and remote:
            results["rtt"] = rtt_phase(remote, config, prepared, s, servers,
                                       results["strategies"], do_http, workdir, step, note,
                                       skipped)

        step("report")
        results["duration_s"] = time.monotonic() - started
        results["machine"]["loadavg_at_end"] = load_average()
        results["targets"] = report.evaluate_targets(results)
        out_dir.mkdir(parents=True, exist_ok=True)
        output.write_json(results, out_dir / "latest.json")
        chart = report.write_chart(results, out_dir / "latest.png")
        section = report.write_markdown(results, out_dir / "latest.md",
                                        "latest.png" if chart else None)
        if args.publish:
            docs_chart = "../benchmarks/results/latest.png" if chart else None
            report.update_docs(output.DOCS, report.markdown(results, docs_chart))
        bar.update(1)
    print(section)
    print(f"results: {out_dir / 'latest.json'}, {out_dir / 'latest.md'}"
          + (f", {out_dir / 'latest.png'}" if chart else "")
          + (f"; {output.DOCS} updated" if args.publish else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
