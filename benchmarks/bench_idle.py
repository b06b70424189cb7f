"""What an idle timeout costs: the ordinary request, the re-issue it causes, and how often.

With ``idle_timeout=T`` a token lives at most ``T`` after it is issued, so a session in
use is re-issued every ``T / 2``. This measures, in process and interleaved with the
no-session baseline (the in-process harness, middleware around a bare endpoint):

- the ordinary request with and without ``idle_timeout`` (nothing to re-issue);
- the request that re-issues the cookie (its token half an idle timeout old);
- the bytes of the Set-Cookie line a re-issue sends;

and from those, the re-issues and the CPU time per active user and hour.

    python -m benchmarks.bench_idle [--requests N] [--idle SECONDS] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import time
from typing import Any

from starlette.middleware import Middleware

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.tokens import TokenCodec
from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app
from benchmarks.strategies import BASELINE, read_jwt

SECRET = "benchmark-secret-" + "x" * 32
USER, ROLE = FIXED_USER


def cookie_issued_at(issued: int) -> str:
    claims = {"sub": USER, "role": ROLE, "jti": "j1", "iat": issued, "exp": issued + 86400,
              "auth_time": issued}
    return "session=" + TokenCodec(SECRET).encode(claims)


def jwt_app(name: str, **options: Any) -> inprocess.BenchApp:
    middleware = Middleware(JWTSessionMiddleware, secret_key=SECRET, **options)
    return make_app(name, Setup([middleware]), read_jwt, bare=True)


def run(requests: int = 20000, idle: int = 1800) -> dict[str, Any]:
    now = int(time.time())
    fresh = inprocess.make_scope("/", cookie_issued_at(now))
    due = inprocess.make_scope("/", cookie_issued_at(now - idle // 2 - 1))
    body = f"{USER} {ROLE}".encode()
    feeds = {
        BASELINE.name: (BASELINE.build(BenchConfig(secret=SECRET), bare=True), fresh),
        "no-idle-timeout": (jwt_app("no-idle-timeout"), fresh),
        "idle-timeout": (jwt_app("idle-timeout", idle_timeout=idle), fresh),
        "idle-timeout-reissue": (jwt_app("idle-timeout-reissue", idle_timeout=idle), due),
    }
    streams = {name: inprocess.Stream(app, [scope], [body], [scope])
               for name, (app, scope) in feeds.items()}
    samples = asyncio.run(inprocess.run_streams(streams, requests))
    costs = inprocess.session_costs(samples, BASELINE.name)
    _, headers, _ = asyncio.run(inprocess.call(feeds["idle-timeout-reissue"][0].app, due))
    lines = inprocess.set_cookies(headers)
    if not lines:
        raise RuntimeError("the due cookie was not re-issued")
    per_hour = 3600 / (idle / 2)
    reissue_us = (costs["idle-timeout-reissue"]["session_cost_us"]["median"]
                  - costs["idle-timeout"]["session_cost_us"]["median"])
    return {
        "idle_timeout_s": idle,
        "request_cost": costs,
        "set_cookie_bytes": sum(len(line) for line in lines),
        "reissues_per_active_user_hour": per_hour,
        "reissue_extra_us": reissue_us,
        "cpu_us_per_active_user_hour": per_hour * reissue_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--idle", type=int, default=1800, help="idle_timeout, seconds")
    output.add_json_arguments(parser, "idle.json")
    args = parser.parse_args()
    results = run(args.requests, args.idle)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {args.requests} requests each, "
          f"idle_timeout={args.idle}s")
    print(f"{'strategy':<24}{'median µs':>12}{'p99 µs':>10}   (cost over {BASELINE.name})")
    for name, entry in results["request_cost"].items():
        if name != BASELINE.name:
            cost = entry["session_cost_us"]
            print(f"{name:<24}{cost['median']:>12.2f}{cost['p99']:>10.2f}")
    print(f"a re-issue adds {results['reissue_extra_us']:.1f} µs and sends "
          f"{results['set_cookie_bytes']} bytes of Set-Cookie; "
          f"{results['reissues_per_active_user_hour']:.0f} re-issues per active user and hour, "
          f"{results['cpu_us_per_active_user_hour']:.0f} µs of CPU")
    path = output.json_path(args, "idle.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
