"""End to end: uvicorn serving one strategy on 127.0.0.1, wrk driving it.

The server runs in subprocesses (``benchmarks/serve.py``: uvicorn, asyncio loop, h11,
access log off, one process per worker); wrk runs ``benchmarks/cookies.lua`` so each request
carries a valid cookie from a pool of users. A warm-up run (results discarded) comes
first; it also fills a caching strategy's cache with every user of the pool.
"""

from __future__ import annotations

import http.client
import json
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.app import BenchConfig
from support.servers import free_port

LUA = Path(__file__).with_name("cookies.lua")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Load:
    duration: float = 5.0
    warmup: float = 2.0
    connections: int = 32
    threads: int = 1


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


@contextmanager
def serve(strategy: str, config: BenchConfig, check_cookie: str, expected: bytes,
          workers: int = 1, server: str = "uvicorn-h11") -> Iterator[str]:
    """Run ``workers`` uvicorn processes for ``strategy`` on one port (see
    ``benchmarks/serve.py``; ``server``: ``uvicorn-h11``, ``uvicorn-httptools``, or
    ``granian``, one process with its own workers); yield the URL once each started and
    a real request authenticated."""
    port = free_port()
    env = dict(os.environ)
    env.update({
        "BENCH_STRATEGY": strategy,
        "BENCH_CONFIG": config.to_json(),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    })
    command = [sys.executable, "-m", "benchmarks.serve", "--port", str(port),
               "--server", server, "--workers", str(workers)]
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryFile(mode="w+") as errors:
        try:
            for _ in range(1 if server == "granian" else workers):
                processes.append(subprocess.Popen(command, env=env, cwd=ROOT, text=True,
                                                  stdout=subprocess.PIPE, stderr=errors))
            deadline = time.monotonic() + 30
            for process in processes:
                if not _wait_ready(process, deadline):
                    errors.seek(0)
                    raise RuntimeError(
                        f"uvicorn for {strategy} did not start: {errors.read()[-800:]}")
            _check(port, check_cookie, expected, strategy)
            yield f"http://127.0.0.1:{port}/"
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                if process.stdout is not None:
                    process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], deadline: float) -> bool:
    assert process.stdout is not None
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or process.poll() is not None:
            return False
        readable, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
        if readable:
            line = process.stdout.readline()
            if line.strip() == "ready":
                return True
            if not line:
                return False


def _check(port: int, cookie: str, expected: bytes, strategy: str) -> None:
    deadline = time.monotonic() + 15
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/", headers={"Cookie": cookie})
            response = conn.getresponse()
            body = response.read()
            if response.status == 200 and body == expected:
                return
            problem = f"{response.status} {body[:80]!r}"
        except OSError as exc:
            problem = str(exc)
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{strategy}: expected 200 {expected!r}, got {problem}")
        time.sleep(0.2)


def run_wrk(url: str, cookie_file: Path, duration: float, load: Load,
            fresh_file: Path | None = None, fresh_every: int = 0) -> dict[str, Any]:
    """One wrk run; wrk's own summary, parsed from the Lua ``done()`` line."""
    args = [str(cookie_file)]
    if fresh_file is not None:
        args += [str(fresh_file), str(fresh_every)]
    command = [
        "wrk", "-t", str(load.threads), "-c", str(load.connections),
        "-d", f"{max(1, round(duration))}s", "--timeout", "10s", "-s", str(LUA), url, "--", *args,
    ]
    env = dict(os.environ, BENCH_WRK_THREADS=str(load.threads))
    result = subprocess.run(command, capture_output=True, text=True, env=env,
                            timeout=duration + 60)
    for line in result.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            data: dict[str, Any] = json.loads(line[len("BENCHJSON "):])
            break
    else:
        raise RuntimeError(f"wrk gave no summary (rc {result.returncode}): "
                           f"{(result.stdout + result.stderr)[-800:]}")
    seconds = data["duration_us"] / 1e6
    errors = sum(data[key] for key in ("connect_errors", "read_errors", "write_errors",
                                       "timeouts"))
    return {
        "rps": data["requests"] / seconds if seconds else 0.0,
        "p50_ms": data["p50_us"] / 1000,
        "p90_ms": data["p90_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "mean_ms": data["mean_us"] / 1000,
        "requests": data["requests"],
        "seconds": seconds,
        "non_2xx": data["status_errors"],
        "socket_errors": errors,
        "fresh_used": data["fresh_used"],
        "fresh_short": data["fresh_short"],
    }


def write_cookie_file(path: Path, cookies: Sequence[str]) -> Path:
    path.write_text("".join(f"{cookie}\n" for cookie in cookies))
    return path


@dataclass
class Target:
    """A running server and what wrk sends it."""

    name: str
    url: str
    cookie_file: Path
    fresh_files: list[Path] | None = None  # first-sight tokens, one file per round
    fresh_every: int = 0


def measure_many(targets: Sequence[Target], load: Load, rounds: int,
                 tick: Callable[[], None] | None = None) -> dict[str, dict[str, Any]]:
    """Warm every server up, then ``rounds`` wrk runs each, interleaved (order rotated each
    round) so that drift of the machine lands on every strategy alike. Per strategy:
    the median over rounds of req/s, p50 and p99, and the per-round figures."""
    for target in targets:
        if load.warmup > 0:
            run_wrk(target.url, target.cookie_file, load.warmup, load)
    runs: dict[str, list[dict[str, Any]]] = {target.name: [] for target in targets}
    for round_index in range(rounds):
        shift = round_index % len(targets)
        for target in [*targets[shift:], *targets[:shift]]:
            fresh = target.fresh_files[round_index] if target.fresh_files else None
            runs[target.name].append(run_wrk(target.url, target.cookie_file, load.duration,
                                             load, fresh, target.fresh_every))
        if tick is not None:
            tick()
    return {name: combine(results, load) for name, results in runs.items()}


def combine(runs: Sequence[dict[str, Any]], load: Load) -> dict[str, Any]:
    def median(key: str) -> float:
        return float(statistics.median(run[key] for run in runs))

    return {
        "rps": median("rps"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "rps_rounds": [round(run["rps"], 1) for run in runs],
        "p99_ms_rounds": [round(run["p99_ms"], 3) for run in runs],
        "requests": sum(run["requests"] for run in runs),
        "seconds": sum(run["seconds"] for run in runs),
        "non_2xx": sum(run["non_2xx"] for run in runs),
        "socket_errors": sum(run["socket_errors"] for run in runs),
        "fresh_used": sum(run["fresh_used"] for run in runs),
        "fresh_short": sum(run["fresh_short"] for run in runs),
        "connections": load.connections,
        "wrk_threads": load.threads,
    }


def check_clean(name: str, result: dict[str, Any]) -> None:
    """Raise when any response was not a 200 or a socket failed: such a run is void."""
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(
            f"{name}: {result['non_2xx']} non-2xx responses and "
            f"{result['socket_errors']} socket errors in {result['requests']} requests"
        )


def bench_http(strategy: str, config: BenchConfig, cookie_file: Path, check_cookie: str,
               expected: bytes, load: Load, workers: int = 1, rounds: int = 1
               ) -> dict[str, Any]:
    """One server alone: start, warm up, measure, stop."""
    with serve(strategy, config, check_cookie, expected, workers) as url:
        result = measure_many([Target(strategy, url, cookie_file)], load, rounds)[strategy]
    result["workers"] = workers
    check_clean(strategy, result)
    return result
