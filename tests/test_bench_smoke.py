"""The benchmark suite still runs: the in-process part for a few strategies, a handful of
requests each, and the report built from it; the tight loops too. No timing assertions."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest

from benchmarks import bench_core, bench_server, inprocess, report
from benchmarks.app import BenchConfig
from benchmarks.output import write_json
from benchmarks.prepare import prepare
from benchmarks.run import Settings, inprocess_phase, machine, versions
from benchmarks.strategies import by_name


def test_inprocess_and_report(tmp_path: Path) -> None:
    names = ["none", "jwt-warm", "jwt-mix", "jwt-cold", "db-sqlite"]
    strategies = [by_name(name) for name in names]
    settings = Settings.quick()
    settings.users, settings.iterations, settings.warmup = 12, 30, 5
    config = BenchConfig(secret="smoke-test-secret-0123456789abcdef",
                         sqlite_path=str(tmp_path / "sessions.sqlite3"))

    prepared = asyncio.run(prepare(strategies, config, settings.users,
                                   settings.iterations // settings.fresh_every + 2))
    assert len(prepared.cookies["jwt-warm"]) == 12
    assert prepared.cookies["db-sqlite"][0].startswith("session_id=")
    assert len(prepared.fresh["jwt-mix"]) == 5
    results_by_name = inprocess_phase(strategies, config, prepared, settings)

    assert sorted(results_by_name) == sorted(names)
    for entry in results_by_name.values():
        assert entry["does"]
        assert entry["request_us"]["n"] == 30
        for key in ("median", "p99", "mean"):
            assert isinstance(entry["session_cost_us"][key], float)
            assert entry["request_us"][key] > 0
    assert results_by_name["none"]["session_cost_us"]["median"] == 0
    assert results_by_name["none"]["ratio_to_jwt_warm"] is None
    assert "ratio_to_jwt_cold" in results_by_name["db-sqlite"]

    results = {
        "mode": "smoke", "command": "pytest", "started_at": "now", "duration_s": 1.0,
        "machine": machine(), "versions": versions({}),
        "settings": {"users": 12, "iterations": 30, "fresh_every": settings.fresh_every,
                     "load": {"connections": 1, "duration": 1, "warmup": 0}},
        "skipped": {}, "strategies": results_by_name, "http": {},
    }
    results["targets"] = report.evaluate_targets(results)
    assert {t["name"] for t in results["targets"]} >= {"warm_cost_us", "http_warm_vs_none"}
    assert next(t for t in results["targets"] if t["name"] == "http_warm_vs_none")["met"] is None
    text = report.markdown(results)
    assert "| jwt-warm |" in text and "| db-sqlite |" in text
    assert "| jwt-mix (1 in 10 first-sight) |" in text
    write_json(results, tmp_path / "latest.json")
    assert (tmp_path / "latest.json").stat().st_size > 0


def test_tight_loops() -> None:
    results = bench_core.run(requests=20, users=12, warmup=5)
    assert set(results["scenarios"]) == {"untouched", "accessed"}
    for scenario in ("untouched", "accessed"):
        costs = results[scenario]
        assert {"none", "starlette-signed", "jwt-warm", "jwt-cold"} <= set(costs)
        assert costs["none"]["session_cost_us"]["median"] == 0
        assert all(entry["request_us"]["n"] == 20 for entry in costs.values())
    assert "| jwt-warm |" in bench_core.markdown(results)


def test_a_req_s_target_under_its_ceiling_is_reported_out_of_reach() -> None:
    # none / starlette-signed = 1.2 in every round: even a free session reaches 1.2x.
    rounds = {"none": [1200.0, 1260.0], "starlette-signed": [1000.0, 1050.0],
              "jwt-warm": [1100.0, 1150.0]}
    results = {"strategies": {}, "http": {name: {"rps": statistics.median(values),
                                                 "rps_rounds": values}
                                          for name, values in rounds.items()}}
    targets = {t["name"]: t for t in report.evaluate_targets(results)}
    versus = targets["http_warm_vs_starlette"]
    assert versus["met"] is False
    assert versus["ceiling"] == pytest.approx(1.2)
    assert versus["reachable"] is False
    assert targets["http_warm_vs_none"]["ceiling"] is None  # against the baseline itself
    row = next(line for line in report.targets_table(list(targets.values()))
               if line.startswith("| jwt-warm req/s / starlette-signed req/s"))
    assert "| 1.20 |" in row and "out of reach" in row


def test_inside_uvicorn_with_the_skeleton_and_the_floor(tmp_path: Path) -> None:
    strategies = [by_name("none"), by_name("jwt-warm")]
    config = BenchConfig(secret="smoke-test-secret-0123456789abcdef", data_dir=str(tmp_path))
    prepared = asyncio.run(prepare(strategies, config, 6, 3))
    server = bench_server.measure(strategies, config, prepared, 20, 5, 10)
    assert {"none", "jwt-warm", "skeleton", "floor"} <= set(server["strategies"])
    assert all(entry["request_us"]["n"] == 20 for entry in server["strategies"].values())
    assert isinstance(server["floor_cost_us"]["median"], float)
    results = {"strategies": {}, "http": {}, "server": server}
    text = "\n".join(report.server_section(results))
    assert "The floor:" in text and "| floor |" not in text
    targets = {t["name"]: t for t in report.evaluate_targets(results)}
    assert targets["server_warm_cost_us"]["ceiling"] == server["floor_cost_us"]["median"]


def test_batched_costs_pair_each_round_with_the_baseline() -> None:
    # Rounds of 3: the baseline's batch medians are 100, 1000, 100; the stream's 110,
    # 1200, 90: per-round costs 10, 200, -10, so the paired median is 10 ns. Unpaired,
    # the medians of all samples (100 and 110) happen to give 10 too: so a stream whose
    # slow batch lands in another round than the baseline's shows the difference.
    base = [100, 100, 100, 1000, 1000, 1000, 100, 100, 100]
    stream = [110, 110, 110, 1200, 1200, 1200, 90, 90, 90]
    out_of_step = [1200, 1200, 1200, 110, 110, 110, 90, 90, 90]
    samples = {"none": base, "stream": stream, "out_of_step": out_of_step}
    paired = inprocess.session_costs(samples, "none", batch=3)
    assert paired["stream"]["session_cost_us"]["median"] == pytest.approx(0.010)
    assert paired["out_of_step"]["session_cost_us"]["median"] == pytest.approx(-0.010)
    assert paired["none"]["session_cost_us"]["median"] == 0
    unpaired = inprocess.session_costs(samples, "none")
    assert unpaired["out_of_step"]["session_cost_us"]["median"] == pytest.approx(0.010)


def test_first_sight_scenarios_answer_and_fill_the_caches() -> None:
    from benchmarks import bench_first_sight, first_sight

    async def check() -> None:
        built = first_sight.Scenarios(30)
        await built.warm_up()
        for name in first_sight.SCENARIOS:
            for scope in built.scopes[name][:12]:  # a "mix" first sight among them
                status, _, body = await inprocess.call(built.apps[name], dict(scope))
                assert status == 200 and body.endswith(first_sight.EXPECTED), name
        # Both caches of the first-sight app were full before its requests came.
        middleware = built.apps["first-sight"].middleware_stack
        while not hasattr(middleware, "front"):
            middleware = middleware.app
        assert len(middleware.front) == middleware.front.size
        codec = middleware.cookies[0][1]
        assert len(codec.cache) == codec.cache.size == first_sight.CACHE_SIZE

    asyncio.run(check())
    # least reads the warm app's caches when each scenario runs in its own process
    # (counted), and a twin's when they are timed together (no CPU cache shared).
    shared = first_sight.Scenarios(5, shared=True)
    assert shared.source is shared.apps["warm"]
    alone = first_sight.Scenarios(5)
    assert alone.source is not alone.apps["warm"] and alone.source_warmup
    results = bench_first_sight.run(60)
    assert set(results["scenarios"]) == set(first_sight.SCENARIOS)
    assert "| first-sight |" in bench_first_sight.markdown(results)


def test_instruction_workload_and_report() -> None:
    from benchmarks import bench_instructions

    # Every measured request runs to its end in one step, as valgrind's count needs.
    bench_instructions.workload("mix", 20)
    bench_instructions.workload("least", 20)
    counts = {"none": 100, "floor": 110, "starlette": 250, "least": 125, "warm": 130,
              "first-sight": 240, "mix": 140, "decrypt-only": 235}
    results = {"requests": 20, "tool": "valgrind", "scenarios": {
        name: {"instructions": value, "over_none": value - 100}
        for name, value in counts.items()},
        "ratios": {"warm_to_floor": 3.0, "least_to_floor": 2.5,
                   "first_sight_to_starlette": 0.93}}
    table = bench_instructions.markdown(results)
    assert "| first-sight | 240 | 140 | 0.93x |" in table
    assert "| least | 125 | 25 | 0.17x |" in table
    assert "Warm is 3.00x the floor; least (the bound under warm) is 2.50x it;" in table
    over = {name: value - 100 for name, value in counts.items()}
    found = bench_instructions.ratios(over)
    assert found["warm_to_floor"] == 3.0 and found["least_to_floor"] == 2.5
    assert found["first_sight_to_starlette"] == 140 / 150
    assert "none_to_starlette" not in found and "starlette_to_starlette" not in found
    del over["floor"]
    assert "warm_to_floor" not in bench_instructions.ratios(over)
