"""Turning one run's results into JSON, a markdown report, a PNG chart and the
``docs/benchmarks.md`` section between its result markers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.app import STRATEGIES

NA = "n/a"
DOCS_START = "<!-- bench-results:start -->"
DOCS_END = "<!-- bench-results:end -->"

# (key, what, comparison, threshold)
TARGETS: list[tuple[str, str, str, float]] = [
    ("warm_cost_us", "jwt-warm session cost over none (median, µs)", "<=", 3.0),
    ("warm_vs_starlette", "jwt-warm cost / starlette-signed cost", "<=", 0.3),
    ("cold_cost_us", "jwt-cold session cost over none (median, µs)", "<=", 30.0),
    ("db_postgres_vs_warm", "db-postgres cost / jwt-warm cost", ">=", 100.0),
    ("db_postgres_tuned_vs_warm", "db-postgres-tuned cost / jwt-warm cost", ">=", 30.0),
    ("http_warm_vs_none", "jwt-warm req/s / none req/s (1 worker)", ">=", 0.95),
    ("http_warm_vs_db_postgres", "jwt-warm req/s / db-postgres req/s (1 worker)", ">=", 3.0),
    ("http_warm_vs_db_sqlite", "jwt-warm req/s / db-sqlite req/s (1 worker)", ">=", 9.0),
]


def _cost(results: dict[str, Any], name: str) -> float | None:
    entry = results.get("strategies", {}).get(name)
    return None if entry is None else float(entry["session_cost_us"]["median"])


def _rps(results: dict[str, Any], name: str) -> float | None:
    entry = results.get("http", {}).get(name)
    return None if entry is None else float(entry["rps"])


def _rps_ratio(results: dict[str, Any], a: str, b: str) -> float | None:
    """req/s of ``a`` over ``b``: the median of per-round ratios when both ran the same
    interleaved rounds (adjacent runs share the machine's state), else of the medians."""
    http = results.get("http", {})
    if a not in http or b not in http:
        return None
    ra, rb = http[a].get("rps_rounds"), http[b].get("rps_rounds")
    if ra and rb and len(ra) == len(rb) and all(rb):
        return float(statistics.median(x / y for x, y in zip(ra, rb, strict=True)))
    return _div(_rps(results, a), _rps(results, b))


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    warm = _cost(results, "jwt-warm")
    values = {
        "warm_cost_us": warm,
        "warm_vs_starlette": _div(warm, _cost(results, "starlette-signed")),
        "cold_cost_us": _cost(results, "jwt-cold"),
        "db_postgres_vs_warm": _div(_cost(results, "db-postgres"), warm),
        "db_postgres_tuned_vs_warm": _div(_cost(results, "db-postgres-tuned"), warm),
        "http_warm_vs_none": _rps_ratio(results, "jwt-warm", "none"),
        "http_warm_vs_db_postgres": _rps_ratio(results, "jwt-warm", "db-postgres"),
        "http_warm_vs_db_sqlite": _rps_ratio(results, "jwt-warm", "db-sqlite"),
    }
    out = []
    for key, what, op, threshold in TARGETS:
        value = values[key]
        met = None if value is None else (value <= threshold if op == "<=" else
                                          value >= threshold)
        out.append({"name": key, "what": what, "target": f"{op} {threshold:g}",
                    "value": value, "met": met})
    return out


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


# Markdown

def _f(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    if value is None:
        return NA
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.0f}x"
    return f"{value:.2g}x" if value < 1 else f"{value:.1f}x"


MIX = "jwt-mix"


def with_mix(results: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``strategies`` and ``http`` with the many-users mix added as ``jwt-mix``."""
    strategies = dict(results.get("strategies", {}))
    http = dict(results.get("http", {}))
    mix = results.get("mix") or {}
    if mix.get("inprocess"):
        entry = dict(mix["inprocess"])
        for reference in ("jwt-warm", "jwt-cold"):
            ref = strategies.get(reference, {}).get("session_cost_us", {}).get("median")
            key = f"ratio_to_{reference.replace('-', '_')}"
            entry[key] = _div(entry["session_cost_us"]["median"], ref)
        strategies[MIX] = entry
    if mix.get("http"):
        http[MIX] = mix["http"]
    return strategies, http


def _ordered(names: Any) -> list[str]:
    order = [*STRATEGIES[:4], MIX, *STRATEGIES[4:]]
    known = [name for name in order if name in names]
    return known + sorted(name for name in names if name not in order)


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = results["versions"]
    return (
        f"{m['cpu_model']}, {m['nproc']} cores (nproc), {m['memory_gb']:.0f} GB RAM, "
        f"{m['os']}; Python {m['python']}; asgi-jwt-session {v.get('asgi-jwt-session', '?')}, "
        f"starlette {v.get('starlette', '?')}, uvicorn {v.get('uvicorn', '?')}, "
        f"jwcrypto {v.get('jwcrypto', '?')}, databases {v.get('databases', '?')}, "
        f"asyncpg {v.get('asyncpg', '?')}, redis-py {v.get('redis', '?')}; "
        f"{v.get('postgresql-server', 'PostgreSQL ?')}, {v.get('redis-server', 'Redis ?')}, "
        f"{v.get('wrk', 'wrk ?')}"
    )


def markdown(results: dict[str, Any], chart: str | None = None) -> str:
    s = results["settings"]
    lines = [
        f"Run: `{results['command']}` ({results['mode']}), {results['started_at']}, "
        f"{results['duration_s']:.0f} s.",
        "",
        f"Machine: {machine_line(results)}.",
        "",
    ]
    m = results["machine"]
    if m.get("cpu_busy_before_start") is not None:
        start, end = m.get("loadavg_at_start"), m.get("loadavg_at_end")
        lines += [
            f"Background: CPUs {m['cpu_busy_before_start']:.0%} busy just before the run"
            + (f"; load average {start[0]:.2f} at start, {end[0]:.2f} at end"
               if start and end else "")
            + ".",
            "",
        ]
    if chart:
        lines += [f"![session strategies, log scale]({chart})", ""]

    strategies, http = with_mix(results)
    lines += [
        f"**Session cost and throughput** ({s['users']} users; in process: "
        f"{s['iterations']} timed requests per strategy; end to end: uvicorn, 1 worker, "
        f"wrk {s['load']['connections']} connections, {s['load']['duration']:g} s after "
        f"{s['load']['warmup']:g} s warm-up)",
        "",
        "| strategy | cost median µs | cost p99 µs | x jwt-warm | x jwt-cold "
        "| req/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in _ordered(set(strategies) | set(http)):
        entry = strategies.get(name)
        h = http.get(name)
        cost = entry["session_cost_us"] if entry else {}
        label = (f"{name} (1 in {results['mix']['fresh_every']} first-sight)"
                 if name == MIX else name)
        lines.append(
            f"| {label} | {_f(cost.get('median'))} | {_f(cost.get('p99'))} "
            f"| {_x(entry.get('ratio_to_jwt_warm')) if entry else NA} "
            f"| {_x(entry.get('ratio_to_jwt_cold')) if entry else NA} "
            f"| {_f(h['rps'], 0) if h else NA} | {_f(h['p50_ms'], 2) if h else NA} "
            f"| {_f(h['p99_ms'], 2) if h else NA} |"
        )
    spread = http.get("none", {}).get("rps_rounds")
    if spread and len(spread) > 1:
        lines += ["", f"Noise: none's req/s over the {len(spread)} rounds ranged "
                  f"{min(spread):,.0f}-{max(spread):,.0f} "
                  f"({(max(spread) - min(spread)) / max(spread):.0%} spread)."]
    lines += [
        "",
        "Cost = the strategy's time per request minus the `none` baseline's, measured in "
        "the same interleaved rounds (p99 likewise: p99 minus p99). "
        "x = this cost / jwt-warm's (or jwt-cold's) cost.",
        "",
    ]

    mix = results.get("mix")
    if mix:
        c = mix.get("inprocess", {}).get("session_cost_us")
        lines += [f"**Many users** (1 request in {mix['fresh_every']} carries a token the "
                  "process has never seen, the rest hit the cache):", ""]
        if c:
            lines.append(f"- in process: cost median {_f(c['median'])} µs, "
                         f"mean {_f(c['mean'])} µs, p99 {_f(c['p99'])} µs "
                         f"(warm {_f(_cost(results, 'jwt-warm'))}, "
                         f"cold {_f(_cost(results, 'jwt-cold'))} µs)")
        h = mix.get("http")
        if h:
            lines.append(f"- end to end: {_f(h['rps'], 0)} req/s, p50 {_f(h['p50_ms'], 2)} ms, "
                         f"p99 {_f(h['p99_ms'], 2)} ms ({h['fresh_used']} first-sight tokens"
                         + (f", {h['fresh_short']} ran short" if h.get("fresh_short") else "")
                         + ")")
        lines.append("")

    rtt = results.get("rtt", {})
    if rtt:
        lines += [
            "**The database farther away** (added round trip through the delay proxy; "
            "SQLite is embedded and has no network hop)",
            "",
            "| strategy | added RTT (measured) | cost median µs | cost p99 µs | x jwt-warm "
            "| req/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, block in rtt.items():
            for name in _ordered(block.get("strategies", {}).keys()
                                 | block.get("http", {}).keys()):
                entry = block.get("strategies", {}).get(name)
                h = block.get("http", {}).get(name)
                cost = entry["session_cost_us"] if entry else {}
                lines.append(
                    f"| {name} | {key} ms ({_f(block['measured_added_ms'], 2)}) "
                    f"| {_f(cost.get('median'))} | {_f(cost.get('p99'))} "
                    f"| {_x(entry.get('ratio_to_jwt_warm')) if entry else NA} "
                    f"| {_f(h['rps'], 0) if h else NA} "
                    f"| {_f(h['p50_ms'], 2) if h else NA} | {_f(h['p99_ms'], 2) if h else NA} |"
                )
        lines.append("")

    scaling = results.get("scaling")
    if scaling and scaling.get("runs"):
        workers = sorted({int(w) for runs in scaling["runs"].values() for w in runs})
        lines += ["**Scaling** (req/s by uvicorn workers)", "",
                  "| strategy | " + " | ".join(f"{w} w" for w in workers) + " |",
                  "|---|" + "---:|" * len(workers)]
        for name, runs in scaling["runs"].items():
            cells = [_f(runs[str(w)]["rps"], 0) if str(w) in runs else NA for w in workers]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    elif scaling and scaling.get("skipped"):
        lines += [f"Scaling: not run ({scaling['skipped']}).", ""]

    lines += ["**Targets** (ratios from this run; req/s ratios are the median of per-round "
              "ratios)", "", "| target | wanted | measured | |",
              "|---|---:|---:|---|"]
    for t in results.get("targets", []):
        verdict = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        lines.append(f"| {t['what']} | {t['target']} | {_f(t['value'], 2)} | {verdict} |")
    lines.append("")

    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())
                  + ".", ""]
    return "\n".join(lines)


def write_markdown(results: dict[str, Any], path: Path, chart: str | None) -> str:
    text = markdown(results, chart)
    path.write_text("# Benchmark results\n\n" + text)
    return text


def update_docs(docs: Path, section: str) -> bool:
    """Replace the text between the result markers of ``docs``; False if no markers."""
    if not docs.exists():
        return False
    text = docs.read_text()
    start, end = text.find(DOCS_START), text.find(DOCS_END)
    if start < 0 or end < start:
        return False
    docs.write_text(text[: start + len(DOCS_START)] + "\n\n" + section.rstrip() + "\n\n"
                    + text[end:])
    return True


# Chart

def write_chart(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    strategies, http = with_mix(results)
    rtt = results.get("rtt", {})
    panels = 1 + (1 if http else 0) + (1 if rtt else 0)
    fig, axes_array = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    axes = list(axes_array[0])
    colors = {name: f"C{i}" for i, name in enumerate(STRATEGIES)}
    colors[MIX] = "#e377c2"
    colors["db-postgres-tuned"] = "#17becf"

    ax = axes.pop(0)
    names = [n for n in _ordered(strategies) if strategies[n]["session_cost_us"]["median"] > 0]
    medians = [strategies[n]["session_cost_us"]["median"] for n in names]
    p99s = [max(strategies[n]["session_cost_us"]["p99"], 1e-3) for n in names]
    y = range(len(names))
    ax.barh(list(y), medians, color=[colors.get(n, "grey") for n in names])
    ax.scatter(p99s, list(y), marker="|", s=200, color="black", label="p99", zorder=3)
    for yi, value in zip(y, medians, strict=True):
        ax.text(value, yi, f" {value:,.1f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("session cost over none, µs per request (log)")
    ax.set_title("In process: median (bar), p99 (|)")
    ax.legend(loc="lower right", fontsize=8)

    if http:
        _http_panel(axes.pop(0), http, colors)
    if rtt:
        _rtt_panel(axes.pop(0), strategies, rtt, colors)

    m = results["machine"]
    fig.suptitle(f"asgi-jwt-session benchmark ({results['mode']}): {m['cpu_model']}, "
                 f"{m['nproc']} cores, Python {m['python']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _http_panel(ax: Any, http: dict[str, Any], colors: dict[str, str]) -> None:
    names = _ordered(http)
    rps = [http[n]["rps"] for n in names]
    y = range(len(names))
    ax.barh(list(y), rps, color=[colors.get(n, "grey") for n in names])
    for yi, value in zip(y, rps, strict=True):
        ax.text(value, yi, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=min(rps) / 2, right=max(rps) * 1.6)
    ax.set_xlabel("requests/s, uvicorn 1 worker + wrk (log)")
    ax.set_title("End to end")


def _rtt_panel(ax: Any, strategies: dict[str, Any], rtt: dict[str, Any],
               colors: dict[str, str]) -> None:
    keys = ["0", *rtt.keys()]
    db_names = _ordered({n for block in rtt.values() for n in block.get("strategies", {})}
                        - {"none"})
    width = 0.8 / max(1, len(db_names))
    for i, name in enumerate(db_names):
        values = []
        for key in keys:
            source = strategies if key == "0" else rtt[key].get("strategies", {})
            entry = source.get(name)
            values.append(entry["session_cost_us"]["median"] if entry else float("nan"))
        ax.bar([k + i * width for k in range(len(keys))], values, width,
               label=name, color=colors.get(name, "grey"))
    ax.set_xticks([k + width * (len(db_names) - 1) / 2 for k in range(len(keys))],
                  [f"+{k} ms" for k in keys])
    for name, style in (("jwt-warm", ":"), ("jwt-cold", "--")):
        if name in strategies:
            ax.axhline(max(strategies[name]["session_cost_us"]["median"], 0.1),
                       linestyle=style, color=colors.get(name, "grey"), label=name)
    ax.set_yscale("log")
    ax.set_ylabel("session cost, µs per request (log)")
    ax.set_title("Added round-trip time to the store")
    ax.legend(fontsize=8)


def main() -> None:
    """``python -m benchmarks.report DIR/latest.json``: redraw the markdown and the chart."""
    import sys

    path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("results") / (
        "latest.json")
    results = json.loads(path.read_text())
    chart = write_chart(results, path.with_suffix(".png"))
    write_markdown(results, path.with_suffix(".md"), path.with_suffix(".png").name
                   if chart else None)
    print(f"wrote {path.with_suffix('.md')}" + (f", {path.with_suffix('.png')}" if chart else ""))


if __name__ == "__main__":
    main()
