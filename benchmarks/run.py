"""The benchmark suite, in one command: ``python -m benchmarks.run --quick`` (or ``--full``).

Starts its own PostgreSQL and Redis (temp dirs, loopback), fills them with the same
users, mints every strategy's cookies through its own login path, then measures, all in
one run: the session cost in process, end to end through uvicorn + wrk, the database
farther away (delay proxy), the many-users mix, and optionally scaling over workers.
Writes ``latest.json``, ``latest.md`` and ``latest.png`` to ``--out`` and refreshes the
results section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.metadata
import importlib.util
import os
import platform
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks import http_load, inprocess, report
from benchmarks.app import (
    DOES,
    NEEDS,
    STRATEGIES,
    BenchApp,
    BenchConfig,
    build,
    mint_cookies,
    role_for,
    temp_sqlite_path,
    user_id,
)
from benchmarks.delay_proxy import DelayProxy, calibrate
from tests.servers import PostgresServer, RedisServer, ServerUnavailable, free_port

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
NETWORKED = ("db-postgres", "db-postgres-tuned", "redis")
WAITS = ("db-sqlite", *NETWORKED)  # strategies that wait on I/O on every request


@dataclasses.dataclass
class Settings:
    mode: str
    users: int
    iterations: int
    warmup: int  # in-process warm-up requests (jwt-warm always sees every user once)
    rtt_iterations: int
    rtt_ms: tuple[float, ...]
    load: http_load.Load
    rtt_load: http_load.Load
    pool_size: int = 32
    fresh_every: int = 10  # many-users mix: 1 request in N carries a first-sight token
    batch: int = 1  # in process: requests per strategy before switching to the next
    rounds: int = 3  # end to end: interleaved wrk runs per strategy
    rtt_rounds: int = 2

    @classmethod
    def quick(cls) -> Settings:
        return cls("quick", users=1000, iterations=2000, warmup=300, rtt_iterations=300,
                   rtt_ms=(0.5, 2.0), load=http_load.Load(duration=2, warmup=1),
                   rtt_load=http_load.Load(duration=2, warmup=1), rounds=4, rtt_rounds=2)

    @classmethod
    def full(cls) -> Settings:
        return cls("full", users=10000, iterations=20000, warmup=2000, rtt_iterations=2000,
                   rtt_ms=(0.5, 2.0), load=http_load.Load(duration=5, warmup=3),
                   rtt_load=http_load.Load(duration=5, warmup=2), rounds=5, rtt_rounds=3)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the short run (default)")
    mode.add_argument("--full", action="store_true", help="longer runs, 10k users")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--strategies", default=",".join(STRATEGIES),
                        help="comma-separated subset (none is always measured)")
    parser.add_argument("--users", type=int, help="users in the pool")
    parser.add_argument("--iterations", type=int, help="timed in-process requests per strategy")
    parser.add_argument("--duration", type=int, help="wrk seconds per strategy and round")
    parser.add_argument("--rounds", type=int, help="interleaved wrk rounds per strategy")
    parser.add_argument("--connections", type=int, help="wrk connections")
    parser.add_argument("--threads", type=int, help="wrk threads")
    parser.add_argument("--rtt-ms", help="added round trips, e.g. 0.5,2 (empty: none)")
    parser.add_argument("--fresh-every", type=int, help="mix: 1 first-sight token in N")
    parser.add_argument("--no-http", action="store_true", help="skip uvicorn + wrk")
    parser.add_argument("--scaling", type=int, metavar="N", default=0,
                        help="also run 1..N uvicorn workers (only where nproc > 2)")
    parser.add_argument("--force-scaling", action="store_true",
                        help="run --scaling even on 2 cores or fewer")
    parser.add_argument("--no-docs", action="store_true",
                        help="do not rewrite the results section of docs/benchmarks.md")
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


def _first_line(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else None


def versions(pg_bindir: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("asgi-jwt-session", "starlette", "uvicorn", "h11", "jwcrypto",
                 "cryptography", "itsdangerous", "databases", "SQLAlchemy", "aiosqlite",
                 "asyncpg", "redis", "orjson"):
        with suppress(importlib.metadata.PackageNotFoundError):
            out[dist.lower()] = importlib.metadata.version(dist)
    import sqlite3

    out["sqlite"] = sqlite3.sqlite_version
    if pg_bindir:
        line = _first_line([str(Path(pg_bindir) / "postgres"), "--version"])
        if line:
            out["postgresql-server"] = line.replace("postgres (PostgreSQL)", "PostgreSQL")
    line = _first_line(["redis-server", "--version"])
    if line:
        out["redis-server"] = "Redis " + line.split("v=")[1].split()[0] if "v=" in line else line
    line = _first_line(["wrk", "-v"])
    if line:
        out["wrk"] = " ".join(line.split()[:2])
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    if commit:
        out["repo_commit"] = commit
    spec = importlib.util.find_spec("asgi_jwt_session")
    if spec is not None and spec.origin:
        package = Path(spec.origin).resolve().parent
        out["asgi_jwt_session_path"] = str(package)
        if package.is_relative_to(ROOT):
            dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                    str(package)], capture_output=True, text=True).stdout
            out["asgi_jwt_session_source"] = "working tree" + (" (uncommitted changes)"
                                                               if dirty.strip() else "")
    return out


# Preparation

def missing_requirement(need: str) -> str | None:
    if need == "jwt":
        try:
            import asgi_jwt_session  # noqa: F401
        except Exception as exc:  # the package is what is measured; say why it is absent
            return f"asgi_jwt_session is not importable: {exc}"
    elif need == "itsdangerous" and importlib.util.find_spec("itsdangerous") is None:
        return "itsdangerous (needed by Starlette's SessionMiddleware) is not installed"
    return None


@dataclasses.dataclass
class Prepared:
    users: list[tuple[str, str]]
    cookies: dict[str, list[str]]  # per strategy, aligned with users
    fresh: list[str]  # first-sight JWT cookies for the in-process mix
    expected: list[bytes]


async def prepare(strategies: Sequence[str], config: BenchConfig, s: Settings,
                  skipped: dict[str, str]) -> Prepared:
    from databases import Database

    from benchmarks import dbsession

    users = [(user_id(i), role_for(i)) for i in range(1, s.users + 1)]
    sids = [secrets.token_urlsafe(32) for _ in users]
    rows = [(uid, role, sid) for (uid, role), sid in zip(users, sids, strict=True)]
    expires_at = int(time.time()) + 14 * 24 * 3600
    cookies: dict[str, list[str]] = {}
    fresh: list[str] = []

    if "db-sqlite" in strategies:
        database = Database(f"sqlite+aiosqlite:///{config.sqlite_path}")
        await database.connect()
        try:
            await dbsession.populate_database(database, rows, expires_at)
        finally:
            await database.disconnect()
    if {"db-postgres", "db-postgres-tuned"} & set(strategies):
        database = Database(config.pg_dsn)
        await database.connect()
        try:
            await dbsession.populate_database(database, rows, expires_at)
            await database.execute("ANALYZE")
        finally:
            await database.disconnect()
    if "redis" in strategies:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(config.redis_url)
        try:
            await dbsession.populate_redis(client, rows, ttl=14 * 24 * 3600)
        finally:
            await client.aclose()
    for name in ("db-sqlite", "db-postgres", "db-postgres-tuned", "redis"):
        if name in strategies:
            cookies[name] = [f"{dbsession.COOKIE}={sid}" for sid in sids]

    if "starlette-signed" in strategies:
        cookies["starlette-signed"] = await mint_cookies(build("starlette-signed", config), users)
    jwt = [name for name in ("jwt-warm", "jwt-cold") if name in strategies]
    if jwt:
        minter = build("jwt-warm", config)
        pool = await mint_cookies(minter, users)
        for name in jwt:
            cookies[name] = pool
        count = s.iterations // s.fresh_every + 2
        picks = [users[i % len(users)] for i in range(count)]
        fresh = await mint_cookies(minter, picks)
    # The floor carries a real cookie too (the largest one), it just never reads it.
    for name in ("jwt-warm", "starlette-signed", "redis", "db-sqlite", "db-postgres"):
        if name in cookies:
            cookies["none"] = cookies[name]
            break
    else:
        cookies["none"] = ["theme=dark"] * len(users)
    expected = [f"{uid} {role}".encode() for uid, role in users]
    return Prepared(users, cookies, fresh, expected)


def _expected_for(name: str, prepared: Prepared) -> list[bytes]:
    if name == "none":
        return [b"u000001 USER"] * len(prepared.users)
    return prepared.expected


def streams_for(names: Sequence[str], config: BenchConfig, prepared: Prepared, s: Settings,
                warmup: int, with_mix: bool) -> dict[str, inprocess.Stream]:
    streams: dict[str, inprocess.Stream] = {}
    for name in names:
        bench_app: BenchApp = build(name, config)
        cookies = prepared.cookies[name]
        count = len(cookies) if name == "jwt-warm" else min(len(cookies), warmup)
        scopes = inprocess.scopes_for(cookies)
        streams[name] = inprocess.Stream(bench_app, scopes[:count],
                                         _expected_for(name, prepared)[:count], scopes)
    if with_mix and "jwt-warm" in names and prepared.fresh:
        pool = prepared.cookies["jwt-warm"]
        fresh = iter(prepared.fresh)
        order = [next(fresh) if (i + 1) % s.fresh_every == 0 else pool[i % len(pool)]
                 for i in range(s.iterations)]
        pool_scopes = inprocess.scopes_for(pool)
        streams["jwt-mix"] = inprocess.Stream(build("jwt-warm", config), pool_scopes,
                                              prepared.expected, inprocess.scopes_for(order))
    return streams


async def probe_added_rtt(direct: BenchConfig, proxied: BenchConfig) -> dict[str, float]:
    """What the proxy adds for the clients the strategies use: median of 200 sequential
    ``SELECT 1`` (asyncpg) / ``PING`` (redis-py), proxied minus direct, ms."""
    out: dict[str, float] = {}

    async def timed(call: Callable[[], Any]) -> float:
        for _ in range(20):
            await call()
        samples = []
        for _ in range(200):
            t0 = time.perf_counter()
            await call()
            samples.append(time.perf_counter() - t0)
        return statistics.median(samples) * 1000

    if direct.pg_dsn and proxied.pg_dsn != direct.pg_dsn:
        import asyncpg

        medians = []
        for dsn in (direct.pg_dsn, proxied.pg_dsn):
            conn = await asyncpg.connect(dsn)
            try:
                medians.append(await timed(lambda c=conn: c.fetchval("SELECT 1")))
            finally:
                await conn.close()
        out["postgres"] = medians[1] - medians[0]
    if direct.redis_url and proxied.redis_url != direct.redis_url:
        import redis.asyncio as aioredis

        medians = []
        for url in (direct.redis_url, proxied.redis_url):
            client = aioredis.Redis.from_url(url)
            try:
                medians.append(await timed(client.ping))
            finally:
                await client.aclose()
        out["redis"] = medians[1] - medians[0]
    return out


def inprocess_phase(names: Sequence[str], config: BenchConfig, prepared: Prepared,
                    s: Settings) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Per strategy: what it does, request time, session cost, ratios; and the mix.

    The strategies that only compute and those that wait on a server are measured in two
    groups, each interleaved with its own ``none`` baseline: mixed in one rotation, the
    core idles while a database request waits and the next computing strategy starts
    cold (it read ~2x slower here, the JWT cold path and Starlette's HMAC the most).
    """
    costs: dict[str, dict[str, Any]] = {}
    waiting = [n for n in names if n in WAITS]
    computing = [n for n in names if n not in WAITS]
    groups = [(computing, True)] + ([(["none", *waiting], False)] if waiting else [])
    for group, with_mix in groups:
        streams = streams_for(group, config, prepared, s, s.warmup, with_mix=with_mix)
        samples = asyncio.run(inprocess.run_streams(streams, s.iterations, s.batch))
        group_costs = inprocess.session_costs(samples)
        if with_mix:
            costs.update(group_costs)
        else:
            group_costs.pop("none")
            costs.update(group_costs)
    mix = costs.pop("jwt-mix", None)
    inprocess.ratios(costs)
    return {name: {"does": DOES[name], **costs[name]} for name in _ordered(costs)}, mix


# HTTP

def http_phase(names: Sequence[str], config: BenchConfig, prepared: Prepared,
               load: http_load.Load, rounds: int, workdir: Path,
               step: Callable[[str], None], note: Callable[[str], None],
               skipped: dict[str, str], tag: str = "", fresh_every: int = 0
               ) -> dict[str, dict[str, Any]]:
    """All ``names`` served at once (one uvicorn each), measured in interleaved rounds.
    With ``fresh_every``, a second jwt-warm server gets the many-users mix as ``jwt-mix``.
    """
    out: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        step(f"http{tag}: start + warm up")
        targets: list[http_load.Target] = []
        for name in names:
            cookie_file = http_load.write_cookie_file(workdir / f"{name}.cookies",
                                                      prepared.cookies[name])
            try:
                url = stack.enter_context(http_load.serve(
                    name, config, prepared.cookies[name][0], _expected_for(name, prepared)[0]))
            except Exception as exc:
                note(f"skip http {name}{tag}: {exc}")
                skipped[f"http {name}{tag}"] = str(exc)[:300]
                continue
            targets.append(http_load.Target(name, url, cookie_file))
        if fresh_every and any(t.name == "jwt-warm" for t in targets):
            try:
                targets.append(mix_target(stack, config, prepared, load, rounds, fresh_every,
                                          workdir))
            except Exception as exc:
                note(f"skip http jwt-mix: {exc}")
                skipped["http jwt-mix"] = str(exc)[:300]
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


def mix_target(stack: ExitStack, config: BenchConfig, prepared: Prepared,
               load: http_load.Load, rounds: int, fresh_every: int, workdir: Path
               ) -> http_load.Target:
    """A second jwt-warm server; each round 1 request in ``fresh_every`` carries a token
    minted for it and never sent before."""
    pool_file = workdir / "jwt-warm.cookies"
    url = stack.enter_context(http_load.serve(
        "jwt-warm", config, prepared.cookies["jwt-warm"][0], prepared.expected[0]))
    probe = http_load.run_wrk(url, pool_file, 1, load)
    per_round = int(probe["rps"] * 1.5 * load.duration / fresh_every) + 50
    fresh = asyncio.run(mint_fresh(config, prepared, per_round * rounds))
    files = [
        http_load.write_cookie_file(workdir / f"fresh-{r}.cookies",
                                    fresh[r * per_round:(r + 1) * per_round])
        for r in range(rounds)
    ]
    return http_load.Target("jwt-mix", url, pool_file, files, fresh_every)


async def mint_fresh(config: BenchConfig, prepared: Prepared, count: int) -> list[str]:
    users = [prepared.users[i % len(prepared.users)] for i in range(count)]
    return await mint_cookies(build("jwt-warm", config), users)


# The run

def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    s = settings_from(args)
    wanted = [n.strip() for n in args.strategies.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in STRATEGIES]
    if unknown:
        print(f"unknown strategies: {', '.join(unknown)}; known: {', '.join(STRATEGIES)}",
              file=sys.stderr)
        return 2
    wanted = ["none", *[n for n in STRATEGIES if n in wanted and n != "none"]]
    do_http = not args.no_http
    if do_http and not http_load.wrk_available():
        print("wrk not found: end-to-end measurements skipped", file=sys.stderr)
        do_http = False
    scaling_n = args.scaling
    scaling_skip = None
    nproc = machine()["nproc"] or 1
    if scaling_n and nproc <= 2 and not args.force_scaling:
        scaling_skip = f"needs more than 2 cores, this machine has {nproc}"
        scaling_n = 0

    net = [n for n in NETWORKED if n in wanted]
    rtts = s.rtt_ms if net else ()
    steps = ["servers", "stores and cookies", "in process"]
    if do_http:
        steps += ["http: start + warm up"] + [f"http: round {i}" for i in range(s.rounds)]
    for rtt in rtts:
        steps.append(f"rtt {rtt:g} ms in process")
        if do_http:
            steps += [f"http +{rtt:g}ms: start + warm up"]
            steps += [f"http +{rtt:g}ms: round {i}" for i in range(s.rtt_rounds)]
    if scaling_n:
        steps += ["scaling"]
    steps.append("report")

    started = time.monotonic()
    results: dict[str, Any] = {
        "schema": 1,
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

    def skip(name: str, reason: str) -> None:
        if name in wanted:
            wanted.remove(name)
            skipped[name] = reason
            note(f"skip {name}: {reason}")

    if args.wait_quiet:
        wait_quiet(args.wait_quiet, note)
    results["machine"]["cpu_busy_before_start"] = round(cpu_busy(), 3)
    results["machine"]["loadavg_at_start"] = load_average()
    if results["machine"]["cpu_busy_before_start"] > 0.10:
        note(f"note: the machine was {results['machine']['cpu_busy_before_start']:.0%} busy "
             "before the run; other work shows up in the numbers (see --wait-quiet)")

    with ExitStack() as stack:
        stack.callback(bar.close)
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ajs-bench-")))
        step("servers")
        for name in list(wanted):
            need = NEEDS.get(name)
            reason = missing_requirement(need) if need else None
            if reason:
                skip(name, reason)
        pg: PostgresServer | None = None
        redis_server: RedisServer | None = None
        if {"db-postgres", "db-postgres-tuned"} & set(wanted):
            try:
                pg = PostgresServer()
                stack.callback(pg.close)
                pg.start()
            except ServerUnavailable as exc:
                for name in ("db-postgres", "db-postgres-tuned"):
                    skip(name, f"PostgreSQL could not be started: {exc}")
        if "redis" in wanted:
            try:
                redis_server = RedisServer()
                stack.callback(redis_server.stop)
                redis_server.start()
            except ServerUnavailable as exc:
                skip("redis", f"Redis could not be started: {exc}")
        results["versions"] = versions(str(pg.bindir) if pg else None)

        config = BenchConfig(
            secret=secrets.token_urlsafe(32), pool_size=s.pool_size,
            cache_size=max(4096, s.users * 2), sqlite_path=temp_sqlite_path(),
            pg_dsn=pg.dsn if pg else "", redis_url=redis_server.url if redis_server else "",
        )
        stack.callback(lambda: Path(config.sqlite_path).unlink(missing_ok=True))
        results["settings"]["jwt_warm_cache_size"] = config.cache_size

        step("stores and cookies")
        prepared = asyncio.run(prepare(wanted, config, s, skipped))

        step("in process")
        results["strategies"], mix = inprocess_phase(wanted, config, prepared, s)
        if mix is not None:
            results["mix"] = {"fresh_every": s.fresh_every, "inprocess": mix}

        if do_http:
            results["http"] = http_phase(wanted, config, prepared, s.load, s.rounds, workdir,
                                         step, note, skipped, fresh_every=s.fresh_every)
            mixed = results["http"].pop("jwt-mix", None)
            if mixed is not None:
                results.setdefault("mix", {"fresh_every": s.fresh_every})["http"] = mixed

        net = [n for n in net if n in wanted]
        if rtts and net:
            results["rtt"] = {}
            warm_cost = results["strategies"].get("jwt-warm", {}).get("session_cost_us", {})
            for rtt in rtts:
                step(f"rtt {rtt:g} ms in process")
                one_way, measured = calibrate(rtt)
                with ExitStack() as proxies:
                    rtt_config = dataclasses.replace(config)
                    if pg is not None:
                        proxy = proxies.enter_context(DelayProxy(pg.port, one_way, free_port()))
                        rtt_config.pg_dsn = pg.dsn.replace(f":{pg.port}/", f":{proxy.port}/")
                    if redis_server is not None:
                        proxy = proxies.enter_context(
                            DelayProxy(redis_server.port, one_way, free_port()))
                        rtt_config.redis_url = redis_server.url.replace(
                            f":{redis_server.port}/", f":{proxy.port}/")
                    rtt_streams = streams_for(["none", *net], rtt_config, prepared, s,
                                              min(s.warmup, 100), with_mix=False)
                    rtt_samples = asyncio.run(
                        inprocess.run_streams(rtt_streams, s.rtt_iterations, s.batch))
                    rtt_costs = inprocess.session_costs(rtt_samples)
                    ref = warm_cost.get("median")
                    for entry in rtt_costs.values():
                        entry["ratio_to_jwt_warm"] = (
                            entry["session_cost_us"]["median"] / ref
                            if ref is not None and ref > 0.05 else None)
                    probes = asyncio.run(probe_added_rtt(config, rtt_config))
                    block: dict[str, Any] = {
                        "rtt_ms": rtt,
                        "measured_added_ms": probes.get("postgres", probes.get("redis", measured)),
                        "probe_added_ms": probes, "echo_added_ms": measured,
                        "proxy_one_way_ms": one_way,
                        "strategies": {n: rtt_costs[n] for n in net},
                    }
                    if do_http:
                        block["http"] = http_phase(net, rtt_config, prepared, s.rtt_load,
                                                   s.rtt_rounds, workdir, step, note, skipped,
                                                   tag=f" +{rtt:g}ms")
                    results["rtt"][f"{rtt:g}"] = block

        if scaling_n:
            step("scaling")
            results["scaling"] = scaling(wanted, config, prepared, s, workdir, scaling_n, note)
        elif scaling_skip:
            results["scaling"] = {"skipped": scaling_skip}
            note(f"scaling skipped: {scaling_skip}")

        step("report")
        results["duration_s"] = time.monotonic() - started
        results["machine"]["loadavg_at_end"] = load_average()
        results["targets"] = report.evaluate_targets(results)
        out: Path = args.out
        out.mkdir(parents=True, exist_ok=True)
        report.write_json(results, out / "latest.json")
        chart = report.write_chart(results, out / "latest.png")
        section = report.write_markdown(results, out / "latest.md",
                                        "latest.png" if chart else None)
        if not args.no_docs and out.resolve() == DEFAULT_OUT.resolve():
            docs_chart = "../benchmarks/results/latest.png" if chart else None
            report.update_docs(DOCS, report.markdown(results, docs_chart))
        bar.update(1)
    print(section)
    print(f"results: {out / 'latest.json'}, {out / 'latest.md'}"
          + (f", {out / 'latest.png'}" if chart else ""))
    return 0


def _ordered(names: Any) -> list[str]:
    return [n for n in STRATEGIES if n in names]


def scaling(wanted: Sequence[str], config: BenchConfig, prepared: Prepared, s: Settings,
            workdir: Path, max_workers: int, note: Callable[[str], None]) -> dict[str, Any]:
    """req/s over 1..N workers; the total database pool stays ``pool_size``."""
    counts = sorted({1, *[2**i for i in range(1, 8) if 2**i < max_workers], max_workers})
    names = [n for n in ("none", "jwt-warm", "jwt-cold", "db-postgres", "db-postgres-tuned",
                         "redis") if n in wanted]
    runs: dict[str, dict[str, Any]] = {n: {} for n in names}
    for workers in counts:
        load = dataclasses.replace(s.load, threads=min(workers, 4),
                                   connections=max(s.load.connections, 16 * workers))
        per_worker = dataclasses.replace(config, pool_size=max(2, -(-s.pool_size // workers)))
        for name in names:
            cookie_file = http_load.write_cookie_file(workdir / f"{name}.cookies",
                                                      prepared.cookies[name])
            try:
                runs[name][str(workers)] = http_load.bench_http(
                    name, per_worker, cookie_file, prepared.cookies[name][0],
                    _expected_for(name, prepared)[0], load, workers=workers)
            except Exception as exc:
                note(f"scaling {name} x{workers}: {exc}")
    return {"workers": counts, "runs": runs}


if __name__ == "__main__":
    raise SystemExit(main())
