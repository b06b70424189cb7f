"""What freshness costs: the ordinary request with it on, and the database load.

1. Per-request cost in process (direct ASGI calls, as in ``bench_core``): the warm JWT
   cookie with freshness off (twice: the difference between the two is the noise),
   and on with a version feed holding ``--feed-size`` other users (the user's own
   entry absent, and present at the cookie's version). The four take turns request by
   request, order rotated, so machine drift lands on all alike.
2. Queries per user per hour for ``revalidate_after`` = 60, 300, 900 s and a user
   making N requests an hour, evenly spaced: computed (N / ceil(R / interval)) and
   measured by driving the middleware through simulated hours (``time.time``
   replaced, the re-issued cookie sent back as a browser would).

    python -m benchmarks.bench_freshness [--requests N] [--feed-size N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.freshness import CheckedUser, VersionFeed
from benchmarks.bench_core import SECRET, ASGIApp, call, endpoint, http_scope, summary

WINDOWS = (60, 300, 900)
RATES = (12, 60, 600, 3600)  # requests per user per hour


class CountingLoader:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, user_id: str) -> CheckedUser:
        self.calls += 1
        return CheckedUser("USER", 1)


def cookie_for(app: JWTSessionMiddleware, now: int, user: str = "user-1") -> str:
    claims = {"sub": user, "role": "USER", "ver": 1, "chk": now, "jti": "j1", "iat": now,
              "exp": now + 30 * 86400, "auth_time": now}
    return "session=" + app.codec.encode(claims)


def request_cost(requests: int, feed_size: int) -> dict[str, Any]:
    now = int(time.time())
    off = JWTSessionMiddleware(endpoint, secret_key=SECRET)
    off_again = JWTSessionMiddleware(endpoint, secret_key=SECRET)
    loader = CountingLoader()
    feed = VersionFeed(3600)
    for i in range(feed_size):
        feed.publish(f"other-{i}", 2)
    on = JWTSessionMiddleware(endpoint, secret_key=SECRET, user_loader=loader, feed=feed)
    hit_feed = VersionFeed(3600)
    for i in range(feed_size):
        hit_feed.publish(f"other-{i}", 2)
    hit_feed.publish("user-1", 1)  # known, same version as the cookie: still fresh
    on_hit = JWTSessionMiddleware(endpoint, secret_key=SECRET, user_loader=loader,
                                  feed=hit_feed)
    apps: dict[str, tuple[ASGIApp, str]] = {
        "freshness-off": (off, cookie_for(off, now)),
        "freshness-off-again": (off_again, cookie_for(off_again, now)),
        "freshness-on": (on, cookie_for(on, now)),
        "freshness-on-feed-hit": (on_hit, cookie_for(on_hit, now)),
    }
    samples: dict[str, list[float]] = {name: [] for name in apps}
    for _ in range(500):  # warm-up: fills the decoded-token caches
        for app, cookie in apps.values():
            call(app, http_scope(cookie))
    clock = time.perf_counter_ns
    names = list(apps)
    for index in range(requests):
        turn = index % len(names)
        for name in names[turn:] + names[:turn]:  # rotate the order
            app, cookie = apps[name]
            scope = http_scope(cookie)
            start = clock()
            call(app, scope)
            samples[name].append((clock() - start) / 1000)
    if loader.calls:
        raise RuntimeError("an ordinary request loaded the user")
    none: list[float] = []
    for _ in range(requests):
        scope = http_scope(None)
        start = clock()
        call(endpoint, scope)
        none.append((clock() - start) / 1000)
    base = summary(none)
    results: dict[str, Any] = {"none": base}
    for name, values in samples.items():
        total = summary(values)
        results[name] = {"total": total,
                         "session_cost_us": {k: total[k] - base[k] for k in total}}
    return results


def computed_queries(rate: int, window: int) -> float:
    """Revalidations an hour for requests every 3600/rate s, chk renewed at each."""
    interval = 3600 / rate
    return rate / max(1, math.ceil(window / interval))


@contextmanager
def fake_time(start: float) -> Iterator[list[float]]:
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
    app = JWTSessionMiddleware(endpoint, secret_key=SECRET, user_loader=loader,
                               revalidate_after=window)
    start = 1_800_000_000
    with fake_time(start) as now:
        cookie = cookie_for(app, start)
        set_cookie: list[str] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            for name, value in message.get("headers", []):
                if name == b"set-cookie":
                    set_cookie.append(value.decode("latin-1"))

        for k in range(rate * hours):
            now[0] = start + (k * 3600) // rate
            set_cookie.clear()
            await app(http_scope(cookie), receive, send)
            for line in set_cookie:
                if line.startswith("session="):
                    cookie = line.split(";", 1)[0]
    return loader.calls / hours


def run(requests: int = 20000, feed_size: int = 100_000, hours: int = 24) -> dict[str, Any]:
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--feed-size", type=int, default=100_000)
    parser.add_argument("--hours", type=int, default=24, help="simulated hours per case")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.requests, args.feed_size, args.hours)
    cost = results["request_cost"]
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {args.requests} requests each, feed of "
          f"{args.feed_size} users")
    print(f"{'warm JWT cookie':<24}{'median µs':>12}{'p99 µs':>10}   (cost over no session)")
    for name in ("freshness-off", "freshness-off-again", "freshness-on",
                 "freshness-on-feed-hit"):
        c = cost[name]["session_cost_us"]
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
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
