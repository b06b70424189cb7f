"""Turning one run's results into JSON, a markdown report, a PNG chart and the
``docs/benchmarks.md`` section between its result markers."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import output
from benchmarks.inprocess import ratio_key
from benchmarks.strategies import (
    BASELINE,
    KEEPS,
    REFERENCES,
    STRATEGIES,
    TARGETS,
    Target,
    color_of,
)

NA = "n/a"
DOCS_MARKER = "bench-results"  # <!-- bench-results:start --> ... :end -->
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
    if target.kind == "server cost":
        entry = results.get("server", {}).get("strategies", {}).get(target.a)
        return None if entry is None else float(entry["session_cost_us"]["median"])
    if target.kind == "cost ratio":
        return _div(_cost(results, target.a), _cost(results, target.b))
    return _rps_ratio(results, target.a, target.b)


def ceiling(results: dict[str, Any], target: Target) -> float | None:
    """The best any session reaches on this server and machine: for a req/s target
    against another strategy, the ratio of a session costing nothing (the baseline's
    req/s over that strategy's, same rounds); for the cost inside uvicorn, the floor's
    (a pass-through middleware adding ``Vary: Cookie``). A ceiling that misses the
    target puts it out of reach."""
    if target.kind == "server cost":
        floor = results.get("server", {}).get("floor_cost_us")
        return None if floor is None else float(floor["median"])
    if target.kind != "rps ratio" or target.b == BASELINE.name:
        return None
    return _rps_ratio(results, BASELINE.name, target.b)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of ``TARGETS``: what, wanted, the value from ``results``, met (None: not
    measured), and for a req/s target against another strategy its ``ceiling`` and
    whether that ceiling meets it (``reachable``)."""
    out = []
    for target in TARGETS:
        value = target_value(results, target)
        top = ceiling(results, target)
        out.append({"name": target.key, "what": target.what,
                    "target": f"{target.op} {target.threshold:g}",
                    "value": value, "met": target.met(value),
                    "ceiling": top, "reachable": target.met(top)})
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
    return "".join(f" | {_x(entry.get(ratio_key(r, stat))) if entry else NA}"
                   for r, stat in REFERENCES)


def _ref_heads() -> str:
    return "".join(f" | x {r}" + ("" if stat == "median" else f" {stat}")
                   for r, stat in REFERENCES)


VERSIONED = ("asgi-jwt-session", "starlette", "uvicorn", "h11", "jwcrypto", "cryptography",
             "databases", "asyncpg", "redis", "starsessions", "fastapi", "fastapi-users",
             "fastapi-users-db-sqlalchemy", "sqlalchemy", "pyjwt")


def machine_line(results: dict[str, Any]) -> str:
    m = results["machine"]
    v = results["versions"]
    servers = [value for key, value in v.items() if key.endswith("-server")]
    libraries = ", ".join(f"{'redis-py' if d == 'redis' else d} {v[d]}" for d in VERSIONED
                          if d in v)
    return (
        f"{m['cpu_model']}, {m['nproc']} cores (nproc), {m['memory_gb']:.0f} GB RAM, "
        f"{m['os']}; Python {m['python']}; {libraries}; "
        + ", ".join([*servers, v.get("wrk", "wrk ?")])
    )


def _strategy(name: str) -> Any:
    return next((s for s in STRATEGIES if s.name == name), None)


def _group(results: dict[str, Any], keeps: str) -> list[str]:
    """The measured strategies whose session lives where ``keeps`` says."""
    measured = results.get("strategies", {})
    return [s.name for s in STRATEGIES if s.keeps == keeps and s.name in measured]


def _range(values: list[float]) -> str:
    if not values:
        return NA
    low, high = min(values), max(values)
    return _x(low) if _x(low) == _x(high) else f"{_x(low)}-{_x(high)}"


def _cost_ratios(results: dict[str, Any], names: list[str], reference: str,
                 stat: str = "median") -> list[float]:
    """Each of ``names``' session cost over ``reference``'s, same statistic."""
    strategies = results.get("strategies", {})
    ref = strategies.get(reference, {}).get("session_cost_us", {}).get(stat)
    if not ref or ref <= 0:
        return []
    return [strategies[n]["session_cost_us"][stat] / ref for n in names]


def _server_side(results: dict[str, Any]) -> list[str]:
    return _group(results, "server") + _group(results, "cookie + user row")


def _other_cookies(results: dict[str, Any]) -> list[str]:
    return [n for n in _group(results, "cookie") if not n.startswith("jwt-")]


def _plain_range(values: list[float]) -> str:
    """``19-178x`` (one ``x``), for a title."""
    text = _range(values)
    return text.replace("x-", "-", 1) if "-" in text else text


def headline(results: dict[str, Any]) -> str | None:
    """The chart's title: the finding, every figure from ``results``."""
    warm = _cost(results, "jwt-warm")
    if warm is None or warm <= 0:
        return None
    text = f"The JWT cookie costs {_f(warm)} µs a request"
    server = _server_side(results)
    if server:
        text += (f"; server-side sessions cost "
                 f"{_plain_range(_cost_ratios(results, server, 'jwt-warm'))} as much")
    cookie = _other_cookies(results)
    if cookie:
        named = "Starlette's signed cookie" if cookie == ["starlette-signed"] else (
            ", ".join(cookie))
        text += f" ({named}: {_plain_range(_cost_ratios(results, cookie, 'jwt-warm'))})"
    return text + "."


def verdict(results: dict[str, Any]) -> list[str]:
    """The claims, checked against this run: one sentence each, figures from the tables."""
    warm = _cost(results, "jwt-warm")
    if warm is None or warm <= 0:
        return []

    def ratios(names: list[str], reference: str, stat: str = "median") -> str:
        return _range(_cost_ratios(results, names, reference, stat))

    server = _server_side(results)
    cookie = _other_cookies(results)
    memory = _group(results, "memory")
    lines = [f"- **The JWT cookie** (jwt-warm) costs {_f(warm)} µs a request over "
             f"`{BASELINE.name}` (median; jwt-cold {_f(_cost(results, 'jwt-cold'))} µs)."]
    if server:
        holds = ("holds" if min(_cost_ratios(results, server, "jwt-warm")) >= 10
                 else "does not hold for all of them")
        lines.append(
            f"- **Sessions kept on a server** ({', '.join(server)}) cost "
            f"{ratios(server, 'jwt-warm')} as much as jwt-warm (cold path "
            f"{ratios(server, 'jwt-cold')}, many-users mix "
            f"{ratios(server, 'jwt-mix', 'mean')} mean to mean): \"10-100x cheaper\" "
            f"{holds} on loopback.")
    rtt = results.get("rtt", {})
    if rtt:
        key = max(rtt, key=float)
        far = rtt[key].get("strategies", {})
        names = [n for n in _ordered(far) if n != BASELINE.name]
        warm_us = results["strategies"]["jwt-warm"]["session_cost_us"]["median"]
        if names:
            lines.append(
                f"- **With the server {key} ms away** (measured "
                f"{_f(rtt[key].get('measured_added_ms'), 2)} ms added round trip) they cost "
                + _range([far[n]["session_cost_us"]["median"] / warm_us for n in names])
                + " as much; the JWT cookie makes no round trip.")
    if cookie:
        lines.append(
            f"- **The other cookie session** ({', '.join(cookie)}, no server) costs "
            f"{ratios(cookie, 'jwt-warm')} jwt-warm's and {ratios(cookie, 'jwt-cold')} "
            "jwt-cold's: the \"10-100x\" claim is not about cookie sessions.")
    if memory:
        lines.append(
            f"- **A session in the worker's memory** ({', '.join(memory)}, not shared "
            f"between workers) costs {ratios(memory, 'jwt-warm')} jwt-warm's and "
            f"{ratios(memory, 'jwt-cold')} jwt-cold's.")
    http = results.get("http", {})
    if "jwt-warm" in http and BASELINE.name in http:
        parts = [f"{_x(_rps_ratio(results, 'jwt-warm', BASELINE.name))} the req/s of "
                 f"{BASELINE.name}"]
        for other in ("starlette-signed", "db-postgres", "starsessions-redis",
                      "fastapi-users-db"):
            if other in http:
                parts.append(f"{_x(_rps_ratio(results, 'jwt-warm', other))} {other}'s")
        lines.append("- **End to end** (uvicorn, 1 worker) jwt-warm serves "
                     + ", ".join(parts) + ".")
    return lines


def markdown(results: dict[str, Any], chart: str | None = None) -> str:
    """The results section: verdict, run, machine, the tables, the targets, skips."""
    s = results["settings"]
    base = BASELINE.name
    lines = []
    said = verdict(results)
    if said:
        lines += ["**Verdict** (this run; a ratio is one cost over the other, same statistic)", "",
                  *said, ""]
    lines += [
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
        lines += [f"![{headline(results) or 'session cost and throughput'}]({chart})", ""]

    strategies = results.get("strategies", {})
    http = results.get("http", {})
    ref_heads = _ref_heads()
    lines += [
        f"**Session cost and throughput** ({s['users']} users, session read by the route; "
        f"in process: {s['iterations']} timed requests per strategy; end to end: uvicorn, "
        f"1 worker, wrk {s['load']['connections']} connections, {s['load']['duration']:g} s "
        f"after {s['load']['warmup']:g} s warm-up, median of {s.get('rounds', '?')} rounds)",
        "",
        "| strategy | session in | cost median µs | mean µs | p99 µs"
        f"{ref_heads} | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|" + "---:|" * len(REFERENCES) + "---:|---:|---:|",
    ]
    for name in _ordered(set(strategies) | set(http)):
        entry = strategies.get(name)
        h = http.get(name)
        cost = entry["session_cost_us"] if entry else {}
        strategy = _strategy(name)
        keeps = strategy.keeps if strategy is not None and strategy.keeps else "-"
        lines.append(
            f"| {_label(results, name)} | {keeps} | {_f(cost.get('median'))} "
            f"| {_f(cost.get('mean'))} | {_f(cost.get('p99'))}{_ratio_cells(entry)} "
            f"| {_f(h['rps'], 0) if h else NA} | {_f(h['p50_ms'], 2) if h else NA} "
            f"| {_f(h['p99_ms'], 2) if h else NA} |"
        )
    spread = http.get(base, {}).get("rps_rounds")
    if spread and len(spread) > 1:
        lines += ["", f"Noise: {base}'s req/s over the {len(spread)} rounds ranged "
                  f"{min(spread):,.0f}-{max(spread):,.0f} "
                  f"({(max(spread) - min(spread)) / max(spread):.0%} spread)."]
    refs = ", ".join(f"{r}'s {stat}" for r, stat in REFERENCES)
    lines += [
        "",
        f"Cost = the strategy's time per request minus the `{base}` baseline's, measured in "
        "the same interleaved rounds (mean and p99 likewise). x NAME = this cost over "
        f"NAME's, same statistic ({refs}). Session in: " + "; ".join(
            f"**{k}**: {v}" for k, v in KEEPS.items()) + ". The fastapi-users rows include "
        "FastAPI's own share, shown by `fastapi-none`.",
        "",
    ]

    for name in [n for n in FIRST_SIGHT if n in strategies or n in http]:
        c = strategies.get(name, {}).get("session_cost_us")
        lines += [f"**Many users** ({name}: 1 request in {s.get('fresh_every', '?')} carries "
                  "a token the process has never seen, the rest hit the cache):", ""]
        if c:
            refs_line = ", ".join(f"{r} {_f(_cost(results, r))}" for r, _ in REFERENCES
                                  if r != name)
            lines.append(f"- in process: cost median {_f(c['median'])} µs, "
                         f"**mean {_f(c['mean'])} µs**, p99 {_f(c['p99'])} µs "
                         f"(medians: {refs_line} µs)")
        h = http.get(name)
        if h:
            lines.append(f"- end to end: {_f(h['rps'], 0)} req/s, p50 {_f(h['p50_ms'], 2)} ms, "
                         f"p99 {_f(h['p99_ms'], 2)} ms ({h['fresh_used']} first-sight tokens"
                         + (f", {h['fresh_short']} ran short" if h.get("fresh_short") else "")
                         + ")")
        lines.append("")

    lines += server_section(results)

    rtt = results.get("rtt", {})
    if rtt:
        lines += [
            "**The servers farther away** (added round trip through the delay proxy; "
            "an embedded store has no network hop and is not in this table)",
            "",
            f"| strategy | added RTT (measured) | cost median µs | mean µs | p99 µs{ref_heads} "
            "| req/s | p50 ms | p99 ms |",
            "|---|---:|---:|---:|---:|" + "---:|" * len(REFERENCES) + "---:|---:|---:|",
        ]
        for key, block in rtt.items():
            for name in _ordered(block.get("strategies", {}).keys()
                                 | block.get("http", {}).keys()):
                entry = block.get("strategies", {}).get(name)
                h = block.get("http", {}).get(name)
                cost = entry["session_cost_us"] if entry else {}
                lines.append(
                    f"| {name} | {key} ms ({_f(block['measured_added_ms'], 2)}) "
                    f"| {_f(cost.get('median'))} | {_f(cost.get('mean'))} "
                    f"| {_f(cost.get('p99'))}{_ratio_cells(entry)} "
                    f"| {_f(h['rps'], 0) if h else NA} "
                    f"| {_f(h['p50_ms'], 2) if h else NA} | {_f(h['p99_ms'], 2) if h else NA} |"
                )
        lines.append("")

    lines += targets_table(results.get("targets", []))

    if results.get("skipped"):
        lines += ["Skipped: " + "; ".join(f"{k} ({v})" for k, v in results["skipped"].items())
                  + ".", ""]
    return "\n".join(lines)


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """The targets as ``evaluate_targets`` gives them: wanted, measured, ceiling, met."""
    lines = ["**Targets** (ratios from this run; req/s ratios are the median of per-round "
             "ratios; *ceiling*: the best any session reaches here: for a req/s ratio, a "
             f"session costing nothing ({BASELINE.name}'s req/s over the other strategy's, "
             "same rounds); inside uvicorn, the floor's cost)", "",
             "| target | wanted | measured | ceiling | |",
             "|---|---:|---:|---:|---|"]
    for t in targets:
        verdict_cell = {True: "met", False: "**missed**", None: "not measured"}[t["met"]]
        if t["met"] is False and t.get("reachable") is False:
            verdict_cell += " (out of reach: under the ceiling)"
        top = t.get("ceiling")
        lines.append(f"| {t['what']} | {t['target']} | {_f(t['value'], 2)} "
                     f"| {_f(top, 2) if top is not None else NA} | {verdict_cell} |")
    return [*lines, ""]


def server_section(results: dict[str, Any]) -> list[str]:
    """Inside uvicorn: the table, the skeleton, the budgets the end-to-end targets leave."""
    server = results.get("server")
    if not server:
        return []
    base = BASELINE.name
    rows = server["strategies"]
    mixed = server.get("interleaved", {})
    lines = [
        f"**Inside uvicorn** (uvicorn's h11 protocol over an in-memory transport, no "
        f"sockets; {server['iterations']} requests per strategy; the route reads the "
        f"session): in batches of {server.get('batch', '?')} requests per strategy, as a "
        "server running one app serves them, and interleaved request by request",
        "",
        "| strategy | request µs | cost median µs | mean µs | p99 µs "
        "| interleaved: request µs | cost median µs | mean µs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in [n for n in _ordered(rows) if n not in ("skeleton", "floor")]:
        request, cost = rows[name]["request_us"], rows[name]["session_cost_us"]
        other = mixed.get(name)
        tail = (f"| {_f(other['request_us']['median'])} "
                f"| {_f(other['session_cost_us']['median'])} "
                f"| {_f(other['session_cost_us']['mean'])} |" if other else "| n/a | n/a | n/a |")
        lines.append(f"| {_label(results, name)} | {_f(request['median'])} "
                     f"| {_f(cost['median'])} | {_f(cost['mean'])} | {_f(cost['p99'])} {tail}")
    skeleton = server["skeleton_us"]
    budgets = server["budget_us"]
    base_us = rows[base]["request_us"]["median"]
    lines += [
        "",
        f"The skeleton: uvicorn + h11 alone (a bare ASGI callable, same response) take "
        f"{_f(skeleton['median'])} µs per request here, Starlette's routing and the route "
        f"{_f(server['starlette_route_us'])} µs more ({base}: {_f(base_us)} µs). A session "
        f"that keeps 0.92x of {base}'s req/s may add at most {_f(budgets.get('0.92'))} µs "
        f"(0.95x: {_f(budgets.get('0.95'))} µs), before the kernel's share of a real request, "
        "which raises the budget end to end.",
        "",
    ]
    floor = server.get("floor_cost_us")
    if floor is not None:
        lines += [f"The floor: the least a cookie session middleware adds whatever it reads "
                  f"(pass through, wrap `send`, mark the response `Vary: Cookie`) costs "
                  f"{_f(floor['median'])} µs over {base} here; each session's cost above "
                  "includes it.", ""]
    http = results.get("http", {})
    if base in http and http[base]["rps"] > 0:
        per_request = 1e6 / http[base]["rps"]
        lines += [f"End to end, {base} at {_f(http[base]['rps'], 0)} req/s is "
                  f"{_f(per_request)} µs of one worker per request: 0.92x of it leaves "
                  f"{_f(per_request * (1 / 0.92 - 1))} µs for the session.", ""]
    return lines


def write_markdown(results: dict[str, Any], path: Path, chart: str | None) -> str:
    text = markdown(results, chart)
    path.write_text("# Benchmark results\n\n" + text)
    return text


def update_docs(docs: Path, section: str) -> bool:
    """Replace the suite's results section of ``docs``; False if it has no markers."""
    return output.update_docs_section(DOCS_MARKER, section, docs)


# Chart

def write_chart(results: dict[str, Any], path: Path) -> bool:
    """In process, end to end and farther-away panels under a title that states the
    finding; False without matplotlib."""
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
    fig, axes_array = plt.subplots(1, panels, figsize=(6.4 * panels, 5.8), squeeze=False)
    axes = list(axes_array[0])

    _cost_panel(axes.pop(0), strategies)
    if http:
        _http_panel(axes.pop(0), results)
    if rtt:
        _rtt_panel(axes.pop(0), strategies, rtt)

    m = results["machine"]
    fig.suptitle(headline(results) or "asgi-jwt-session benchmark", fontsize=13,
                 fontweight="bold", y=0.985)
    fig.text(0.5, 0.925, f"asgi-jwt-session benchmark ({results['mode']}, "
             f"{results.get('started_at', '?')}): {m['cpu_model']}, {m['nproc']} cores, "
             f"Python {m['python']}; session cost = time per request over "
             f"{BASELINE.name}'s (no session)", ha="center", fontsize=9, color="0.3")
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _thousands(value: float, _position: float | None = None) -> str:
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _cost_panel(ax: Axes, strategies: dict[str, Any]) -> None:
    # Log axis, on purpose: the cookie sessions cost 10-35 µs and the server-side ones
    # 200-2,000 µs. On a linear axis the cookie bars would be under 2% of the width, and
    # the comparison the cookie rows are there for (jwt-warm against starlette-signed,
    # about 2x) would vanish; clipping the database bars instead would hide the 10-100x
    # that is the claim. Majors only at decades, labelled 10 / 100 / 1,000 (no 10^n, no
    # minor labels), so the tick labels cannot collide; every bar carries its value.
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    names = [n for n in _ordered(strategies) if strategies[n]["session_cost_us"]["median"] > 0]
    medians = [strategies[n]["session_cost_us"]["median"] for n in names]
    p99s = [max(strategies[n]["session_cost_us"]["p99"], m) for n, m in
            zip(names, medians, strict=True)]
    y = list(range(len(names)))
    ax.barh(y, medians, color=[color_of(n) for n in names], height=0.7)
    # p99 as a thin whisker from the bar's end; the value label starts after it
    ax.hlines(y, medians, p99s, color="0.3", linewidth=1)
    ax.scatter(p99s, y, marker="|", s=40, color="0.3", zorder=3)
    for yi, median, p99 in zip(y, medians, p99s, strict=True):
        ax.text(p99 * 1.12, yi, f"{_f(median)}  (p99 {_f(p99)})", va="center", fontsize=8)
    ax.set_yticks(y, names)
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("jwt-"):
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlim(left=min(medians) / 2, right=max(p99s) * 22)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.grid(axis="x", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel("µs per request (log scale): bar = median, whisker = p99")
    ax.set_title("Session cost per request, in process")


def _http_panel(ax: Axes, results: dict[str, Any]) -> None:
    # Linear from 0: req/s differences are what a reader compares by bar length.
    from matplotlib.ticker import FuncFormatter

    http = results["http"]
    base = BASELINE.name
    names = _ordered(http)
    rps = [http[n]["rps"] for n in names]
    y = list(range(len(names)))
    ax.barh(y, rps, color=[color_of(n) for n in names], height=0.7)
    for yi, name, value in zip(y, names, rps, strict=True):
        ratio = None if name == base else _rps_ratio(results, name, base)
        ax.text(value, yi, f" {value:,.0f}" + (f"  ({_x(ratio)})" if ratio else ""),
                va="center", fontsize=8)
    if base in http:
        ax.axvline(http[base]["rps"], color="0.4", linestyle=":", linewidth=1, zorder=0)
    ax.set_yticks(y, names)
    for tick in ax.get_yticklabels():
        if tick.get_text().startswith("jwt-"):
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    ax.set_xlim(left=0, right=max(rps) * 1.32)
    ax.xaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.grid(axis="x", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    ax.set_xlabel(f"requests/s, uvicorn 1 worker + wrk; (x) = share of {base}'s req/s")
    ax.set_title("Throughput end to end (higher is better)")


def _rtt_panel(ax: Axes, strategies: dict[str, Any], rtt: dict[str, Any]) -> None:
    # Linear: what this panel shows is how the server-side cost grows with the distance
    # to the server, which a log axis flattens; the JWT cookie's few µs sit on the floor
    # at this scale, which is the point, so they are written rather than drawn.
    from matplotlib.ticker import FuncFormatter

    keys = ["0", *rtt.keys()]
    remote = _ordered({n for block in rtt.values() for n in block.get("strategies", {})}
                      - {BASELINE.name})
    width = 0.8 / max(1, len(remote))
    top = 0.0
    for i, name in enumerate(remote):
        values = []
        for key in keys:
            source = strategies if key == "0" else rtt[key].get("strategies", {})
            entry = source.get(name)
            values.append(entry["session_cost_us"]["median"] if entry else float("nan"))
        top = max([top, *(v for v in values if not math.isnan(v))])
        ax.bar([k + i * width for k in range(len(keys))], values, width,
               label=name, color=color_of(name))
    ax.set_xticks([k + width * (len(remote) - 1) / 2 for k in range(len(keys))],
                  ["loopback" if k == "0" else f"+{k} ms round trip" for k in keys])
    jwt = [f"{name} {_f(strategies[name]['session_cost_us'][stat])} µs"
           + ("" if stat == "median" else f" ({stat})")
           for name, stat in REFERENCES if name in strategies]
    if jwt:
        ax.axhline(strategies[REFERENCES[0][0]]["session_cost_us"][REFERENCES[0][1]],
                   color=color_of(REFERENCES[0][0]), linewidth=2)
        ax.text(0.02, 0.97, "JWT cookie (the line on the floor), at any distance:\n"
                + ", ".join(jwt), transform=ax.transAxes, fontsize=8, va="top")
    ax.set_ylim(bottom=0, top=top * 1.08 if top else None)
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.grid(axis="y", color="0.9", zorder=0)
    ax.set_axisbelow(True)
    ax.set_ylabel("session cost, µs per request (median)")
    ax.set_title("Server-side sessions as the server moves away")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3,
              frameon=False)


def main() -> None:
    """Redraw the markdown and the chart from a run's JSON, without running anything."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Re-render latest.md and latest.png next to a suite run's JSON "
                    "(no benchmark runs).")
    parser.add_argument("json", nargs="?", type=Path,
                        default=output.PUBLISHED / "latest.json",
                        help="the run's JSON (default: benchmarks/results/latest.json)")
    parser.add_argument("--publish", action="store_true",
                        help=f"also rewrite the results section of {output.DOCS.name} "
                             f"(between its {DOCS_MARKER} markers)")
    args = parser.parse_args()
    path: Path = args.json
    results = json.loads(path.read_text())
    png = path.with_suffix(".png")
    chart = write_chart(results, png)
    write_markdown(results, path.with_suffix(".md"), png.name if chart else None)
    said = f"wrote {path.with_suffix('.md')}" + (f", {png}" if chart else "")
    if args.publish:
        docs_chart = f"../benchmarks/results/{png.name}" if chart else None
        if not update_docs(output.DOCS, markdown(results, docs_chart)):
            raise SystemExit(f"{output.DOCS} has no {DOCS_MARKER} markers")
        said += f"; {output.DOCS} updated"
    print(said)


if __name__ == "__main__":
    main()
