"""What freshness costs: the ordinary request with it on, and the database load.

1. Per-request cost in process (the in-process harness, middleware around a bare ASGI
   endpoint as in ``bench_core``): the warm JWT cookie with freshness off (twice: the
   difference between the two is the noise), and on with a version feed holding
   ``--feed-size`` other users (the user's own entry absent, and present at the cookie's
   version). They and the baseline take turns request by request, order rotated, so
   machine drift lands on all alike.
2. Queries per user per hour for ``revalidate_after`` = 60, 300, 900 s and a user
   making N requests an hour, evenly spaced: computed (N / ceil(R / interval)) and
   measured by driving the middleware through simulated hours (``time.time``
   replaced, the re-issued cookie sent back as a browser would).

    python -m benchmarks.bench_freshness [--requests N] [--feed-size N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.middleware import Middleware

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.freshness import CheckedUser, Freshness, VersionFeed
from asgi_jwt_session.tokens import TokenCodec
from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app
from benchmarks.strategies import BASELINE, read_jwt

SECRET = "benchmark-secret-" + "x" * 32
USER, ROLE = FIXED_USER
WINDOWS = (60, 300, 900)
RATES = (12, 60, 600, 3600)  # requests per user per hour


class CountingLoader:
    """A user loader that always finds the user at version 1, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, user_id: str) -> CheckedUser:
        self.calls += 1
        return CheckedUser(ROLE, 1)


def cookie_at(now: int) -> str:
    """A session cookie for ``USER`` at session version 1, last checked at ``now``."""
    claims = {"sub": USER, "role": ROLE, "ver": 1, "chk": now, "jti": "j1", "iat": now,
              "exp": now + 30 * 86400, "auth_time": now}
    return "session=" + TokenCodec(SECRET).encode(claims)


def jwt_app(name: str, freshness: Freshness | None = None) -> inprocess.BenchApp:
    middleware = Middleware(JWTSessionMiddleware, secret_key=SECRET, freshness=freshness)
    return make_app(name, Setup([middleware]), read_jwt, bare=True)


def feed_of(size: int, own_version: int | None = None) -> VersionFeed:
    """A feed with ``size`` other users at version 2, and ``USER`` at ``own_version``."""
    feed = VersionFeed(3600)
    for i in range(size):
        feed.publish(f"other-{i}", 2)
    if own_version is not None:
        feed.publish(USER, own_version)
    return feed


def request_cost(requests: int, feed_size: int) -> dict[str, Any]:
    """Request time and session cost over the baseline, freshness off and on (µs)."""
    loader = CountingLoader()
    apps = [
        BASELINE.build(BenchConfig(secret=SECRET), bare=True),
        jwt_app("freshness-off"),
        jwt_app("freshness-off-again"),
        jwt_app("freshness-on", Freshness(loader, feed=feed_of(feed_size))),
        # Known to the feed at the cookie's version: still fresh.
        jwt_app("freshness-on-feed-hit", Freshness(loader, feed=feed_of(feed_size, 1))),
    ]
    scope = inprocess.make_scope("/", cookie_at(int(time.time())))
    body = f"{USER} {ROLE}".encode()
    streams = {app.name: inprocess.Stream(app, [scope] * 500, [body] * 500, [scope])
               for app in apps}
    samples = asyncio.run(inprocess.run_streams(streams, requests))
    if loader.calls:
        raise RuntimeError("an ordinary request loaded the user")
    return inprocess.session_costs(samples, BASELINE.name)


def computed_queries(rate: int, window: int) -> float:
    """Revalidations an hour for requests every 3600/rate s, chk renewed at each."""
    interval = 3600 / rate
    return rate / max(1, math.ceil(window / interval))


@contextmanager
def fake_time(start: float) -> Iterator[list[float]]:
    """``time.time`` answers ``now[0]`` until the block ends."""
    now = [start]
    real = time.time
    time.time = lambda: now[0]
    try:
        yield now
    finally:
        time.time = real


async def measured_queries(rate: int, window: int, hours: int) -> float:
    """Drive one user's requests through simulated hours; count the loads."""
    loader = CountingLoader()
    app = jwt_app("freshness", Freshness(loader, revalidate_after=window)).app
    start = 1_800_000_000
    with fake_time(start) as now:
        cookie = cookie_at(start)
        for k in range(rate * hours):
            now[0] = start + (k * 3600) // rate
            _, headers, _ = await inprocess.call(app, inprocess.make_scope("/", cookie))
            for pair in inprocess.set_cookies(headers):
                if pair.startswith("session="):
                    cookie = pair
    return loader.calls / hours


def run(requests: int = 20000, feed_size: int = 100_000, hours: int = 24) -> dict[str, Any]:
    """The request costs and the queries-per-user-hour table."""
    results: dict[str, Any] = {"request_cost": request_cost(requests, feed_size)}
    table = []
    for window in WINDOWS:
        for rate in RATES:
            table.append({"revalidate_after": window, "requests_per_hour": rate,
                          "computed": computed_queries(rate, window),
                          "measured": asyncio.run(measured_queries(rate, window, hours))})
    results["queries_per_user_hour"] = table
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--feed-size", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=24, help="simulated hours per case")
    output.add_json_arguments(parser, "freshness.json")
    args = parser.parse_args()
    results = run(args.requests, args.feed_size, args.hours)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {args.requests} requests each, feed of "
          f"{args.feed_size} users")
    print(f"{'warm JWT cookie':<24}{'median µs':>12}{'p99 µs':>10}   "
          f"(cost over {BASELINE.name})")
    for name, entry in results["request_cost"].items():
        if name != BASELINE.name:
            c = entry["session_cost_us"]
            print(f"{name:<24}{c['median']:>12.2f}{c['p99']:>10.2f}")
    print()
    print("revalidation queries per user per hour (one process; measured over "
          f"{args.hours} simulated hours)")
    print(f"{'revalidate_after':>17}{'req/hour':>10}{'computed':>10}{'measured':>10}"
          f"{'q/s per 10k users':>19}")
    for row in results["queries_per_user_hour"]:
        print(f"{row['revalidate_after']:>16}s{row['requests_per_hour']:>10}"
              f"{row['computed']:>10.1f}{row['measured']:>10.2f}"
              f"{row['measured'] * 10_000 / 3600:>19.2f}")
    path = output.json_path(args, "freshness.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
