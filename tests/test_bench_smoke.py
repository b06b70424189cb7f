"""The benchmark suite still runs: the in-process part for a few strategies, a handful of
requests each, and the report built from it. No timing assertions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from benchmarks import report
from benchmarks.app import BenchConfig
from benchmarks.run import Settings, inprocess_phase, machine, prepare, versions


def test_inprocess_and_report(tmp_path: Path) -> None:
    names = ["none", "jwt-warm", "jwt-cold", "db-sqlite"]
    settings = Settings.quick()
    settings.users, settings.iterations, settings.warmup = 12, 30, 5
    config = BenchConfig(secret="smoke-test-secret-0123456789abcdef",
                         sqlite_path=str(tmp_path / "sessions.sqlite3"))

    prepared = asyncio.run(prepare(names, config, settings, {}))
    assert len(prepared.cookies["jwt-warm"]) == 12
    assert prepared.cookies["db-sqlite"][0].startswith("session_id=")
    strategies, mix = inprocess_phase(names, config, prepared, settings)

    assert sorted(strategies) == sorted(names)
    for entry in strategies.values():
        assert entry["does"]
        assert entry["request_us"]["n"] == 30
        for key in ("median", "p99", "mean"):
            assert isinstance(entry["session_cost_us"][key], float)
            assert entry["request_us"][key] > 0
    assert strategies["none"]["session_cost_us"]["median"] == 0
    assert strategies["none"]["ratio_to_jwt_warm"] is None
    assert "ratio_to_jwt_cold" in strategies["db-sqlite"]
    assert mix is not None and mix["request_us"]["n"] == 30

    results = {
        "mode": "smoke", "command": "pytest", "started_at": "now", "duration_s": 1.0,
        "machine": machine(), "versions": versions(None),
        "settings": {"users": 12, "iterations": 30,
                     "load": {"connections": 1, "duration": 1, "warmup": 0}},
        "skipped": {}, "strategies": strategies, "http": {},
        "mix": {"fresh_every": settings.fresh_every, "inprocess": mix},
    }
    results["targets"] = report.evaluate_targets(results)
    assert {t["name"] for t in results["targets"]} >= {"warm_cost_us", "http_warm_vs_none"}
    assert next(t for t in results["targets"] if t["name"] == "http_warm_vs_none")["met"] is None
    text = report.markdown(results)
    assert "| jwt-warm |" in text and "| db-sqlite |" in text
    report.write_json(results, tmp_path / "latest.json")
    assert (tmp_path / "latest.json").stat().st_size > 0
