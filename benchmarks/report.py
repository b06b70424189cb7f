"""Turning one run's results into JSON, a markdown report, a PNG chart and the
``docs/benchmarks.md`` section between its result markers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.inprocess import ratio_key
from benchmarks.strategies import BASELINE, REFERENCES, STRATEGIES, TARGETS, Target, color_of

NA = "n/a"
DOCS_START = "<!-- bench-results:start -->"
DOCS_END = "<!-- bench-results:end -->"
if TYPE_CHECKING:
    from matplotlib.axes import Axes

FIRST_SIGHT = tuple(s.name for s in STRATEGIES if s.first_sight)


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


def target_value(results: dict[str, Any], target: Target) -> float | None:
    if target.kind == "cost":
        return _cost(results, target.a)
    if target.kind == "cost ratio":
        return _div(_cost(results, target.a), _cost(results, target.b))
    return _rps_ratio(results, target.a, target.b)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of ``TARGETS``: what, wanted, the value from ``results``, met (None: not
    measured)."""
    out = []
    for target in TARGETS:
        value = target_value(results, target)
        out.append({"name": target.key, "what": target.what,
                    "target": f"{target.op} {target.threshold:g}",
                    "value": value, "met": target.met(value)})
    return out


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


def _ordered(names: Any) -> list[str]:
    """Registry order; names the registry does not know (an older run's) after, sorted."""
    order = [s.name for s in STRATEGIES]
    known = [name for name in order if name in names]
    return known + sorted(name for name in names if name not in order)


def _label(results: dict[str, Any], name: str) -> str:
    if name in FIRST_SIGHT:
        return f"{name} (1 in {results['settings'].get('fresh_every', '?')} first-sight)"
    return name


def _ratio_cells(entry: dict[str, Any] | None) -> str:
    return "".join(f" | {_x(entry.get(ratio_key(r))) if entry else NA}" for r in REFERENCES)


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = results["versions"]
    servers = [value for key, value in v.items() if key.endswith("-server")]
    return (
        f"{m['cpu_model']}, {m['nproc']} cores (nproc), {m['memory_gb']:.0f} GB RAM, "
        f"{m['os']}; Python {m['python']}; asgi-jwt-session {v.get('asgi-jwt-session', '?')}, "
        f"starlette {v.get('starlette', '?')}, uvicorn {v.get('uvicorn', '?')}, "
        f"jwcrypto {v.get('jwcrypto', '?')}, databases {v.get('databases', '?')}, "
        f"asyncpg {v.get('asyncpg', '?')}, redis-py {v.get('redis', '?')}; "
        + ", ".join([*servers, v.get("wrk", "wrk ?")])
    )


def markdown(results: dict[str, Any], chart: str | None = None) -> str:
    """The results section: run, machine, the tables, the targets, what was skipped."""
    s = results["settings"]
    base = BASELINE.name
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

    strategies = results.get("strategies", {})
    http = results.get("http", {})
    ref_heads = "".join(f" | x {r}" for r in REFERENCES)
    lines += [
        f"**Session cost and throughput** ({s['users']} users; in process: "
        f"{s['iterations']} timed requests per strategy; end to end: uvicorn, 1 worker, "
        f"wrk {s['load']['connections']} connections, {s['load']['duration']:g} s after "
        f"{s['load']['warmup']:g} s warm-up)",
        "",
        f"| strategy | cost median µs | cost p99 µs{ref_heads} | req/s | p50 ms | p99 ms |",
        "|---|---:|---:|" + "---:|" * len(REFERENCES) + "---:|---:|---:|",
    ]
    for name in _ordered(set(strategies) | set(http)):
        entry = strategies.get(name)
        h = http.get(name)
        cost = entry["session_cost_us"] if entry else {}
        lines.append(
            f"| {_label(results, name)} | {_f(cost.get('median'))} | {_f(cost.get('p99'))}"
            f"{_ratio_cells(entry)} "
            f"| {_f(h['rps'], 0) if h else NA} | {_f(h['p50_ms'], 2) if h else NA} "
            f"| {_f(h['p99_ms'], 2) if h else NA} |"
        )
    spread = http.get(base, {}).get("rps_rounds")
    if spread and len(spread) > 1:
        lines += ["", f"Noise: {base}'s req/s over the {len(spread)} rounds ranged "
                  f"{min(spread):,.0f}-{max(spread):,.0f} "
                  f"({(max(spread) - min(spread)) / max(spread):.0%} spread)."]
    lines += [
        "",
        f"Cost = the strategy's time per request minus the `{base}` baseline's, measured in "
        "the same interleaved rounds (p99 likewise: p99 minus p99). "
        "x NAME = this cost / NAME's cost.",
        "",
    ]

    for name in [n for n in FIRST_SIGHT if n in strategies or n in http]:
        c = strategies.get(name, {}).get("session_cost_us")
        lines += [f"**Many users** ({name}: 1 request in {s.get('fresh_every', '?')} carries "
                  "a token the process has never seen, the rest hit the cache):", ""]
        if c:
            refs = ", ".join(f"{r} {_f(_cost(results, r))}" for r in REFERENCES)
            lines.append(f"- in process: cost median {_f(c['median'])} µs, "
                         f"mean {_f(c['mean'])} µs, p99 {_f(c['p99'])} µs ({refs} µs)")
        h = http.get(name)
        if h:
            lines.append(f"- end to end: {_f(h['rps'], 0)} req/s, p50 {_f(h['p50_ms'], 2)} ms, "
                         f"p99 {_f(h['p99_ms'], 2)} ms ({h['fresh_used']} first-sight tokens"
                         + (f", {h['fresh_short']} ran short" if h.get("fresh_short") else "")
                         + ")")
        lines.append("")

    rtt = results.get("rtt", {})
    if rtt:
        lines += [
            "**The servers farther away** (added round trip through the delay proxy; "
            "an embedded store has no network hop and is not in this table)",
            "",
            f"| strategy | added RTT (measured) | cost median µs | cost p99 µs{ref_heads} "
            "| req/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|" + "---:|" * len(REFERENCES) + "---:|---:|---:|",
        ]
        for key, block in rtt.items():
            for name in _ordered(block.get("strategies", {}).keys()
                                 | block.get("http", {}).keys()):
                entry = block.get("strategies", {}).get(name)
                h = block.get("http", {}).get(name)
                cost = entry["session_cost_us"] if entry else {}
                lines.append(
                    f"| {name} | {key} ms ({_f(block['measured_added_ms'], 2)}) "
                    f"| {_f(cost.get('median'))} | {_f(cost.get('p99'))}{_ratio_cells(entry)} "
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
    """In process, end to end and farther-away panels; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False

    strategies = results.get("strategies", {})
    http = results.get("http", {})
    rtt = results.get("rtt", {})
    panels = 1 + (1 if http else 0) + (1 if rtt else 0)
    fig, axes_array = plt.subplots(1, panels, figsize=(6 * panels, 4.6), squeeze=False)
    axes = list(axes_array[0])

    ax = axes.pop(0)
    names = [n for n in _ordered(strategies) if strategies[n]["session_cost_us"]["median"] > 0]
    medians = [strategies[n]["session_cost_us"]["median"] for n in names]
    p99s = [max(strategies[n]["session_cost_us"]["p99"], 1e-3) for n in names]
    y = range(len(names))
    ax.barh(list(y), medians, color=[color_of(n) for n in names])
    ax.scatter(p99s, list(y), marker="|", s=200, color="black", label="p99", zorder=3)
    for yi, value in zip(y, medians, strict=True):
        ax.text(value, yi, f" {value:,.1f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(f"session cost over {BASELINE.name}, µs per request (log)")
    ax.set_title("In process: median (bar), p99 (|)")
    ax.legend(loc="lower right", fontsize=8)

    if http:
        _http_panel(axes.pop(0), http)
    if rtt:
        _rtt_panel(axes.pop(0), strategies, rtt)

    m = results["machine"]
    fig.suptitle(f"asgi-jwt-session benchmark ({results['mode']}): {m['cpu_model']}, "
                 f"{m['nproc']} cores, Python {m['python']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _http_panel(ax: Axes, http: dict[str, Any]) -> None:
    names = _ordered(http)
    rps = [http[n]["rps"] for n in names]
    y = range(len(names))
    ax.barh(list(y), rps, color=[color_of(n) for n in names])
    for yi, value in zip(y, rps, strict=True):
        ax.text(value, yi, f" {value:,.0f}", va="center", fontsize=8)
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=min(rps) / 2, right=max(rps) * 1.6)
    ax.set_xlabel("requests/s, uvicorn 1 worker + wrk (log)")
    ax.set_title("End to end")


def _rtt_panel(ax: Axes, strategies: dict[str, Any], rtt: dict[str, Any]) -> None:
    keys = ["0", *rtt.keys()]
    remote = _ordered({n for block in rtt.values() for n in block.get("strategies", {})}
                      - {BASELINE.name})
    width = 0.8 / max(1, len(remote))
    for i, name in enumerate(remote):
        values = []
        for key in keys:
            source = strategies if key == "0" else rtt[key].get("strategies", {})
            entry = source.get(name)
            values.append(entry["session_cost_us"]["median"] if entry else float("nan"))
        ax.bar([k + i * width for k in range(len(keys))], values, width,
               label=name, color=color_of(name))
    ax.set_xticks([k + width * (len(remote) - 1) / 2 for k in range(len(keys))],
                  [f"+{k} ms" for k in keys])
    for name, style in zip(REFERENCES, (":", "--", "-."), strict=False):
        if name in strategies:
            ax.axhline(max(strategies[name]["session_cost_us"]["median"], 0.1),
                       linestyle=style, color=color_of(name), label=name)
    ax.set_yscale("log")
    ax.set_ylabel("session cost, µs per request (log)")
    ax.set_title("Added round-trip time to the server")
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
