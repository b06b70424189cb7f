"""Sizing the decoded-token cache for real traffic: hit rates, memory, and what they cost.

1. **Hit rates** (a simulation, no server): ``--users`` daily-active users, each request
   from a user drawn from a Zipf distribution (exponent ``--zipf``: a few users make
   most requests), ``--requests-per-day`` requests spread evenly over the day; several
   workers, each with its own LRU of ``cache_size`` entries (as each uvicorn process has
   its own), the worker picked per request at random, round robin, or per user (sticky,
   the best case); and the daily re-issue: a user's token is replaced on their first
   request once it is a day old (``update_age``), so each user's token changes once a
   day and is new to every worker. A day of warm-up, then a measured day.
2. **Memory per entry**: tracemalloc over ``--entries`` tokens cached by a real
   ``JWTSessionMiddleware`` (the route reads the session, so what the session layer
   keeps per entry is counted too): typical tokens (this suite's sign-in: user id and
   role), tokens with 1 KiB of session data, and tokens close to the 12 KiB cookie
   budget, the largest the cache keeps.
3. **What a request costs** at each hit rate: jwt-warm (a hit) and jwt-cold (a miss)
   measured side by side in process (1,000 users, the route reads the session), mixed
   in the simulated proportion: the **mean** and p99, not only the median.

The recommended ``cache_size`` is the smallest simulated size that brings every scenario
within ``--within`` (hit-rate points) of a cache holding everyone, with its memory at
typical and at 12 KiB tokens.

    python -m benchmarks.bench_cache [--quick] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import random
import secrets
import statistics
import tempfile
import time
import tracemalloc
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, auth, login
from asgi_jwt_session.errors import SessionTooLarge
from benchmarks import inprocess, output
from benchmarks.app import BenchConfig, role_for, user_id
from benchmarks.inprocess import call, make_scope
from benchmarks.prepare import prepare, stream_for
from benchmarks.run import load_average, machine
from benchmarks.strategies import BASELINE, by_name

Choice = Literal["random", "round-robin", "sticky"]
SIZES = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
CURRENT_DEFAULT = 4096
DOCS_MARKER = "bench-cache"
COOKIE_BUDGET = 12 * 1024  # the middleware's default max_cookie_size: the largest cached


@dataclass(frozen=True)
class Scenario:
    users: int = 10_000
    zipf: float = 1.0
    workers: int = 8
    choice: Choice = "random"
    requests_per_day: int = 500_000

    @property
    def label(self) -> str:
        return (f"{self.users:,} users, Zipf {self.zipf:g}, {self.workers} worker"
                f"{'s' if self.workers > 1 else ''} ({self.choice}), "
                f"{self.requests_per_day:,} requests/day")


def scenarios(reference: Scenario) -> list[Scenario]:
    """The reference, then one change at a time."""
    out = [reference]
    out += [replace(reference, choice=c) for c in ("round-robin", "sticky")]
    out += [replace(reference, workers=w) for w in (1, 4, 16)]
    out += [replace(reference, users=u) for u in (1_000, 100_000)]
    out += [replace(reference, zipf=z) for z in (0.8, 1.2)]
    return out


def simulate(scenario: Scenario, sizes: Sequence[int], seed: int = 1) -> dict[str, float]:
    """Hit rate over the measured day for each cache size (after a day of warm-up)."""
    rng = random.Random(seed)
    n_users = scenario.users
    cumulative = list(itertools.accumulate(1 / (rank ** scenario.zipf)
                                           for rank in range(1, n_users + 1)))
    per_day = scenario.requests_per_day
    total = 2 * per_day
    users = rng.choices(range(n_users), cum_weights=cumulative, k=total)
    workers = scenario.workers
    if scenario.choice == "random":
        picks = [rng.randrange(workers) for _ in range(total)]
    elif scenario.choice == "round-robin":
        picks = [i % workers for i in range(total)]
    else:
        owner = [rng.randrange(workers) for _ in range(n_users)]
        picks = [owner[u] for u in users]
    # Each user's token was issued some time in the day before the simulation starts.
    issued = [-rng.random() * per_day for _ in range(n_users)]
    version = [0] * n_users
    caches = [[OrderedDict[int, None]() for _ in range(workers)] for _ in sizes]
    hits = [0] * len(sizes)
    measured = 0
    for i in range(total):
        u = users[i]
        key = u * 4096 + version[u]  # the token this request carries
        if i - issued[u] >= per_day:  # a day old: this response re-issues it
            version[u] += 1
            issued[u] = i
        counting = i >= per_day
        measured += counting
        w = picks[i]
        for j, size in enumerate(sizes):
            cache = caches[j][w]
            if key in cache:
                cache.move_to_end(key)
                hits[j] += counting
            else:
                cache[key] = None
                if len(cache) > size:
                    cache.popitem(last=False)
    return {str(size): hits[j] / measured for j, size in enumerate(sizes)}


# Memory per entry

def memory_app(cache_size: int) -> Starlette:
    async def whoami(request: Request) -> Response:
        session = auth(request)
        user = session.user if session is not None else None
        return PlainTextResponse(f"{user.id} {user.role}" if user else "-")

    async def sign_in(request: Request) -> Response:
        pad = int(request.query_params.get("pad", "0"))
        data = int(request.query_params.get("data", "0"))
        claims: dict[str, Any] = {"pad": secrets.token_urlsafe(pad)[:pad]} if pad else {}
        session = login(request, request.path_params["uid"],
                        request.query_params.get("role", "USER"), **claims)
        if data:
            session["notes"] = secrets.token_urlsafe(data)[:data]
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", whoami), Route("/login/{uid}", sign_in)],
                     middleware=[Middleware(JWTSessionMiddleware,
                                            secret_key="bench-cache-secret-0123456789abcdef",
                                            cache_size=cache_size)])


async def token_cookies(app: Starlette, count: int, pad: int = 0, data: int = 0
                        ) -> list[str]:
    """``count`` Cookie headers from the app's own sign-in."""
    cookies = []
    for i in range(1, count + 1):
        status, headers, _ = await call(
            app, make_scope(f"/login/{user_id(i)}?role={role_for(i)}&pad={pad}&data={data}"))
        cookies.append("; ".join(inprocess.set_cookies(headers)))
        if status != 200:
            raise RuntimeError(f"sign-in gave {status}")
    return cookies


def token_length(cookie: str) -> int:
    """The token's length, chunks joined (``session=...; session.1=...``)."""
    return sum(len(part.split("=", 1)[1]) for part in cookie.split("; "))


async def padded_to(app: Starlette, budget: int) -> int:
    """The ``pad`` that makes a token as long as possible within ``budget`` characters."""
    low, high = 0, budget
    while low < high:
        middle = (low + high + 1) // 2
        try:
            (cookie,) = await token_cookies(app, 1, pad=middle)
        except SessionTooLarge:  # over the middleware's budget: it refuses to write it
            high = middle - 1
            continue
        if token_length(cookie) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


async def measure_entries(count: int, pad: int = 0, data: int = 0) -> dict[str, float]:
    """Bytes retained per cached entry (tracemalloc), for ``count`` distinct tokens."""
    app = memory_app(cache_size=count + 16)
    cookies = await token_cookies(app, count, pad=pad, data=data)
    warm = await token_cookies(app, 16)
    for cookie in warm:  # first requests build what is shared by all, not per entry
        await call(app, make_scope("/", cookie))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for cookie in cookies:  # each request's own header bytes, as a server reads them:
        status, _, _ = await call(app, make_scope("/", cookie))  # the front cache keeps them
        if status != 200:
            raise RuntimeError(f"read gave {status}")
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    return {"entries": count, "token_chars": statistics.fmean(map(token_length, cookies)),
            "bytes_per_entry": grown / count}


def memory(entries: int) -> dict[str, dict[str, float]]:
    async def all_kinds() -> dict[str, dict[str, float]]:
        app = memory_app(cache_size=16)
        pad = await padded_to(app, COOKIE_BUDGET) - 64  # room for longer ids and roles
        return {
            "typical": await measure_entries(entries),
            "1 KiB session data": await measure_entries(entries, data=1024),
            "12 KiB (the cookie budget)": await measure_entries(max(50, entries // 10),
                                                                 pad=pad),
        }

    return asyncio.run(all_kinds())


# What a request costs at a hit rate

def request_samples(iterations: int, users: int) -> dict[str, list[int]]:
    """ns per request of none, jwt-warm (hits) and jwt-cold (misses), interleaved."""
    strategies = [by_name(name) for name in (BASELINE.name, "jwt-warm", "jwt-cold")]
    with tempfile.TemporaryDirectory(prefix="ajs-bench-") as data_dir:
        config = BenchConfig(secret=secrets.token_urlsafe(32), data_dir=data_dir,
                             cache_size=max(4096, 2 * users))
        prepared = asyncio.run(prepare(strategies, config, users))
        streams = {s.name: stream_for(s, config, prepared, 300, iterations, 10)
                   for s in strategies}
        return asyncio.run(inprocess.run_streams(streams, iterations))


def weighted_quantile(parts: Sequence[tuple[Sequence[int], float]], q: float) -> float:
    """The ``q`` quantile of a mixture: each (samples, weight) part, weights summing to 1."""
    points = sorted((value, weight / len(samples)) for samples, weight in parts
                    if weight > 0 for value in samples)
    total = 0.0
    for value, weight in points:
        total += weight
        if total >= q:
            return float(value)
    return float(points[-1][0])


def mixed_cost(samples: dict[str, list[int]], hit_rate: float) -> dict[str, float]:
    """Session cost (µs over the baseline) of a stream with ``hit_rate`` of cache hits."""
    warm, cold, base = samples["jwt-warm"], samples["jwt-cold"], samples[BASELINE.name]
    parts = [(warm, hit_rate), (cold, 1 - hit_rate)]
    mean = hit_rate * statistics.fmean(warm) + (1 - hit_rate) * statistics.fmean(cold)
    return {
        "mean": (mean - statistics.fmean(base)) / 1000,
        "median": (weighted_quantile(parts, 0.5) - statistics.median(base)) / 1000,
        "p99": (weighted_quantile(parts, 0.99) - weighted_quantile([(base, 1.0)], 0.99))
        / 1000,
    }


def recommend(simulated: Sequence[dict[str, Any]], within: float) -> int:
    """The smallest size that gets every scenario within ``within`` (hit-rate points) of
    what a cache holding everyone gets there: past it, a larger cache only saves the
    misses no cache avoids (a token new to a worker)."""
    sizes = sorted(int(size) for size in simulated[0]["hit_rate"])
    for size in sizes:
        if all(entry["hit_rate"][str(size)] >= entry["hit_rate"][str(sizes[-1])] - within
               for entry in simulated):
            return size
    return sizes[-1]


def run(reference: Scenario, sizes: Sequence[int], entries: int, iterations: int,
        within: float, tick: Any = None) -> dict[str, Any]:
    started = time.monotonic()
    where = machine()
    simulated = []
    for scenario in scenarios(reference):
        simulated.append({**asdict(scenario), "label": scenario.label,
                          "hit_rate": simulate(scenario, sizes)})
        if tick:
            tick(scenario.label)
    samples = request_samples(iterations, 1000)
    reference_rates = simulated[0]["hit_rate"]
    costs = {size: mixed_cost(samples, rate) for size, rate in reference_rates.items()}
    mem = memory(entries)
    chosen = recommend(simulated, within)
    where["loadavg_at_end"] = load_average()
    return {
        "machine": where,
        "sizes": list(sizes),
        "current_default": CURRENT_DEFAULT,
        "scenarios": simulated,
        "reference": simulated[0]["label"],
        "cost_us": costs,
        "warm_cost_us": inprocess.session_costs(samples, BASELINE.name)["jwt-warm"]
        ["session_cost_us"],
        "cold_cost_us": inprocess.session_costs(samples, BASELINE.name)["jwt-cold"]
        ["session_cost_us"],
        "memory": mem,
        "within": within,
        "recommended": chosen,
        "duration_s": time.monotonic() - started,
    }


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f} MiB" if value < 2**30 else f"{value / 2**30:,.2f} GiB"


def markdown(results: dict[str, Any]) -> str:
    sizes = [str(s) for s in results["sizes"]]
    mem = results["memory"]
    typical = mem["typical"]["bytes_per_entry"]
    largest = mem["12 KiB (the cookie budget)"]["bytes_per_entry"]
    chosen = results["recommended"]
    m = results["machine"]
    lines = [
        "**Hit rate by cache size** (`python -m benchmarks.bench_cache`: each worker its "
        "own LRU of `cache_size` entries; a day of warm-up, then one day measured; every "
        "token re-issued once a day)",
        "",
        "| scenario | " + " | ".join(sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for entry in results["scenarios"]:
        lines.append(f"| {entry['label']} | "
                     + " | ".join(f"{entry['hit_rate'][s]:.3f}" for s in sizes) + " |")
    warm, cold = results["warm_cost_us"], results["cold_cost_us"]
    lines += [
        "",
        f"**What a request costs** in the first scenario (session cost over "
        f"{BASELINE.name}, µs, in process, 1,000 users; a hit costs jwt-warm's "
        f"{warm['median']:.1f} median / {warm['mean']:.1f} mean, a miss jwt-cold's "
        f"{cold['median']:.1f} / {cold['mean']:.1f}, measured side by side; mixed in the "
        "simulated proportion)",
        "",
        "| cache_size | hit rate | mean µs | median µs | p99 µs | memory, typical tokens "
        "| memory, 12 KiB tokens |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        cost = results["cost_us"][size]
        rate = results["scenarios"][0]["hit_rate"][size]
        marks = (" (now)" if int(size) == results["current_default"] else "") + (
            " **(recommended)**" if int(size) == chosen else "")
        lines.append(f"| {int(size):,}{marks} | {rate:.3f} | {cost['mean']:.1f} "
                     f"| {cost['median']:.1f} | {cost['p99']:.1f} "
                     f"| {_mib(typical * int(size))} | {_mib(largest * int(size))} |")
    lines += [
        "",
        "**Memory per cached entry** (tracemalloc, what the cache and the session layer "
        "keep per token: "
        + "; ".join(f"{name}: {m['bytes_per_entry']:,.0f} bytes for a "
                    f"{m['token_chars']:,.0f}-character token" for name, m in mem.items())
        + ").",
        "",
        f"Recommended `cache_size`: **{chosen:,}**, the smallest size that brings every "
        f"scenario above within {results['within']:.2f} of the hit rate of a cache that "
        f"holds everyone: {_mib(typical * chosen)} per worker at typical tokens, at most "
        f"{_mib(largest * chosen)} if every entry were a 12 KiB token. Past that size "
        "the misses left are tokens new to a worker (first sight after a re-issue, or a "
        "user's first request to that worker), which no cache size avoids: more workers "
        "behind random balancing mean more of them, sticky balancing fewer.",
        "",
        f"Machine (costs and memory): {m['cpu_model']}, {m['nproc']} cores, Python "
        f"{m['python']}; load average {m['loadavg_at_start'][0]:.2f} at start, "
        f"{m['loadavg_at_end'][0]:.2f} at end; {results['duration_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer requests per day and entries (about 4x faster)")
    parser.add_argument("--users", type=int, default=10_000, help="reference: active users")
    parser.add_argument("--zipf", type=float, default=1.0, help="reference: Zipf exponent")
    parser.add_argument("--workers", type=int, default=8, help="reference: workers")
    parser.add_argument("--requests-per-day", type=int, help="default 500,000 (quick 150,000)")
    parser.add_argument("--sizes", help="comma-separated cache sizes")
    parser.add_argument("--entries", type=int, help="entries per memory measurement")
    parser.add_argument("--within", type=float, default=0.01,
                        help="recommend the smallest size within this many hit-rate "
                        "points of the best in every scenario")
    output.add_json_arguments(parser, "cache.json")
    args = parser.parse_args()
    per_day = args.requests_per_day or (150_000 if args.quick else 500_000)
    reference = Scenario(args.users, args.zipf, args.workers, "random", per_day)
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES
    results = run(reference, sizes, args.entries or (500 if args.quick else 2000),
                  5000 if args.quick else 10000, args.within,
                  tick=lambda label: print(f"simulated: {label}", flush=True))
    text = markdown(results)
    print(text)
    path = output.json_path(args, "cache.json")
    output.write_json(results, path)
    if args.publish:
        output.update_docs_section(DOCS_MARKER, text)
    print(f"results: {path} ({results['duration_s']:.0f} s)")


if __name__ == "__main__":
    main()
