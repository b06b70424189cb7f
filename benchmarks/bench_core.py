"""Per-request session cost in process: no session, Starlette's signed cookie, this
package warm (decoded-token cache) and cold (tokens never seen before).

Each request is a direct ASGI call on a tiny app that reads the user id and role and
sends a small response; the coroutine is driven without an event loop, since nothing
in it waits on I/O, so the figures are the session code's own cost.

    python -m benchmarks.bench_core [--requests N] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.middleware.sessions import SessionMiddleware

from asgi_jwt_session import JWTSessionMiddleware, TokenCodec

SECRET = "benchmark-secret-" + "x" * 32
ASGIApp = Callable[[dict[str, Any], Any, Any], Coroutine[Any, Any, None]]


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    return None


async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads who is signed in, as a guarded route would, and answers."""
    session = scope.get("session")
    if session is not None:
        user = getattr(session, "user", None)
        if user is not None:
            body = f"{user.id}:{user.role}".encode()
        else:
            body = f"{session.get('user_id')}:{session.get('role')}".encode()
    else:
        body = b"anonymous"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def http_scope(cookie: str | None) -> dict[str, Any]:
    headers = [(b"host", b"bench"), (b"accept", b"*/*")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
            "query_string": b"", "root_path": "", "headers": headers,
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}


def call(app: ASGIApp, scope: dict[str, Any]) -> None:
    """Run one request to completion without an event loop (nothing in it awaits I/O)."""
    coroutine = app(scope, receive, send)
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("the app awaited something real; use an event loop instead")


def timed(app: ASGIApp, cookies: list[str | None], warmup: int = 200) -> list[float]:
    """Microseconds per request, one sample per cookie (cookies cycle through warm-up)."""
    for index in range(warmup):
        call(app, http_scope(cookies[index % len(cookies)]))
    samples = []
    clock = time.perf_counter_ns
    for cookie in cookies:
        scope = http_scope(cookie)
        start = clock()
        call(app, scope)
        samples.append((clock() - start) / 1000)
    return samples


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": statistics.median(ordered),
            "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]}


def starlette_cookie(app: SessionMiddleware, user_id: str, role: str) -> str:
    """A real Starlette session cookie, made by Starlette's own signer."""
    import base64

    data = base64.b64encode(json.dumps({"user_id": user_id, "role": role}).encode())
    return f"session={app.signer.sign(data).decode()}"


def jwt_cookies(count: int, codec: TokenCodec) -> list[str]:
    now = int(time.time())
    return [
        "session=" + codec.encode({"sub": f"user-{i}", "role": "USER", "jti": f"j{i}",
                                   "iat": now, "exp": now + 3600, "auth_time": now})
        for i in range(count)
    ]


def run(requests: int = 20000) -> dict[str, Any]:
    none = timed(endpoint, [None] * requests)

    starlette = SessionMiddleware(endpoint, secret_key=SECRET)
    signed = timed(starlette, [starlette_cookie(starlette, "user-1", "USER")] * requests)

    warm_app = JWTSessionMiddleware(endpoint, secret_key=SECRET)
    one = jwt_cookies(1, warm_app.codec)
    warm = timed(warm_app, one * requests)

    cold_app = JWTSessionMiddleware(endpoint, secret_key=SECRET, cache_size=0)
    fresh = jwt_cookies(requests, cold_app.codec)
    cold = timed(cold_app, fresh)  # cache off: every request decrypts

    base = summary(none)
    results: dict[str, Any] = {"none": base}
    for name, samples in (("starlette-signed", signed), ("jwt-warm", warm), ("jwt-cold", cold)):
        total = summary(samples)
        results[name] = {
            "total": total,
            "session_cost_us": {key: total[key] - base[key] for key in ("median", "p99")},
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = run(args.requests)
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}, {args.requests} requests each")
    print(f"{'strategy':<18}{'median µs':>12}{'p99 µs':>10}   (cost over no session)")
    print(f"{'none (total)':<18}{results['none']['median']:>12.2f}{results['none']['p99']:>10.2f}")
    for name in ("starlette-signed", "jwt-warm", "jwt-cold"):
        cost = results[name]["session_cost_us"]
        print(f"{name:<18}{cost['median']:>12.2f}{cost['p99']:>10.2f}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(results, file, indent=2)


if __name__ == "__main__":
    main()
