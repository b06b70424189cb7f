"""The end-to-end benchmark's servers: each serves a strategy's app and answers a real
authenticated request (what ``benchmarks.http_load.serve`` checks before any wrk run),
and ``bench_servers`` reports per server."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from benchmarks import bench_servers, http_load
from benchmarks.app import BenchConfig
from benchmarks.prepare import expected_for, prepare
from benchmarks.serve import SERVERS
from benchmarks.strategies import by_name


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_serves_jwt_warm(server: str, tmp_path: Path) -> None:
    strategy = by_name("jwt-warm")
    config = BenchConfig(secret=secrets.token_urlsafe(32), data_dir=str(tmp_path),
                         sqlite_path=str(tmp_path / "bench.sqlite3"))
    prepared = asyncio.run(prepare([strategy], config, 5))
    cookie = prepared.cookies["jwt-warm"][0]
    with http_load.serve("jwt-warm", config, cookie, expected_for(strategy, prepared)[0],
                         server=server) as url:
        assert url.startswith("http://127.0.0.1:")


def test_the_table_gives_ratios_per_server() -> None:
    def run(*rps: float) -> dict[str, object]:
        return {"rps": sum(rps) / len(rps), "rps_rounds": list(rps)}

    results = {
        "command": "x", "started_at": "now", "duration_s": 1.0, "rounds": 2, "duration": 1,
        "users": 10, "machine": {"cpu_model": "cpu", "nproc": 2, "loadavg_at_start": [0.5]},
        "runs": {"granian": {"none": run(100, 200), "starlette-signed": run(50, 100),
                             "jwt-warm": run(90, 180)}},
    }
    text = bench_servers.markdown(results)
    assert "| granian | 150 | 75 | 135 | 0.90x | 1.80x |" in text
