"""Instructions per request, counted by valgrind: a figure the machine's load does not move.

Each scenario is a Starlette app called directly (no server) with a route that reads the
signed-in user and three session values. The program runs once per scenario under
``valgrind --tool=cachegrind`` and once more doing all the same set-up but no measured
request; the difference over the request count is the scenario's instructions per
request. Set-up (minting tokens, warming and filling the caches) is identical in both
runs, so it cancels out.

Scenarios:

- ``none``: no session middleware (the baseline every cost is over);
- ``floor``: a pass-through middleware that wraps ``send`` and adds ``Vary: Cookie``,
  the least any cookie session middleware adds;
- ``starlette``: Starlette's ``SessionMiddleware``, 1,000 users' cookies in turn;
- ``warm``: this package, the same 1,000 users, every token already cached;
- ``first-sight``: this package, every request a token minted elsewhere that this
  process has never seen, arriving while both caches are full (each request inserts
  and evicts), the session data read by the route;
- ``mix``: nine warm requests, then one first-sight request.

    python -m benchmarks.bench_instructions [--requests N] [--json PATH | --publish]
    python -m benchmarks.bench_instructions --workload SCENARIO --requests N  # one run

Needs valgrind (Debian's ``valgrind`` package); runs the scenarios two at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks import output
from benchmarks.inprocess import make_scope, receive_empty
from benchmarks.run import load_average, machine

SECRET = "benchmark-instructions-" + "k7Qz" * 8
USERS = 1000
CACHE_SIZE = 2048  # the token cache (the front cache holds min(1024, this))
DATA = {"theme": "dark", "cart": [3, 1, 4], "lang": "en-GB"}
SCENARIOS = ("none", "floor", "starlette", "warm", "first-sight", "mix")
MIX_EVERY = 10  # one request in ten, in "mix", carries a token never seen
DEFAULT_REQUESTS = 2000
DOCS_MARKER = "bench-instructions"
TOTAL = re.compile(rb"I\s+refs:\s+([\d,]+)")


def build(requests: int) -> dict[str, tuple[Any, list[dict[str, Any]]]]:
    """Every scenario's app and the scopes it is fed, built the same way whichever
    scenario runs (so the set-up cancels out of the difference)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.sessions import SessionMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.types import Message, Receive, Scope, Send

    from asgi_jwt_session import JWTSessionMiddleware, auth
    from asgi_jwt_session.tokens import TokenCodec

    async def fixed(request: Request) -> PlainTextResponse:
        return PlainTextResponse("u000001 USER dark en-GB")

    async def starlette_route(request: Request) -> PlainTextResponse:
        session = request.session
        return PlainTextResponse(f"{session.get('uid')} {session.get('role')} "
                                 f"{session.get('theme')} {session.get('lang')}")

    async def jwt_route(request: Request) -> PlainTextResponse:
        session = auth(request)
        if session is None:
            return PlainTextResponse("signed out", status_code=401)
        return PlainTextResponse(f"{session.user.id} {session.user.role} "
                                 f"{session.get('theme')} {session.get('lang')}")

    class Floor:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
                await send(message)

            await self.app(scope, receive, send_wrapper)

    def app(route: Any, *middleware: Middleware) -> Any:
        return Starlette(routes=[Route("/", route)], middleware=list(middleware))

    elsewhere = TokenCodec(SECRET, cache_size=0)  # another process's encoder
    now = int(time.time())

    def token(index: int) -> str:
        claims = {"sub": f"u{index:06d}", "role": "USER", "ver": 0, "iat": now,
                  "exp": now + 30 * 86400, "auth_time": now, "jti": f"j{index:08d}",
                  "data": DATA}
        return elsewhere.encode(claims)

    jwt_app = app(jwt_route, Middleware(JWTSessionMiddleware, secret_key=SECRET,
                                        cache_size=CACHE_SIZE))
    users = [f"session={token(i)}" for i in range(USERS)]
    fillers = [f"session={token(USERS + i)}" for i in range(CACHE_SIZE)]
    new = [f"session={token(10 * USERS + i)}" for i in range(requests)]

    signer = SessionMiddleware(fixed, secret_key=SECRET)
    starlette_cookies = []
    for i in range(USERS):
        payload = {"uid": f"u{i:06d}", "role": "USER", **DATA}
        starlette_cookies.append(f"session={starlette_cookie(signer, payload)}")

    mix = []
    fresh = iter(new)
    for i in range(requests):
        mix.append(next(fresh) if i % MIX_EVERY == MIX_EVERY - 1 else users[i % USERS])
    return {
        "none": (app(fixed), [make_scope("/", users[i % USERS]) for i in range(requests)]),
        "floor": (app(fixed, Middleware(Floor)),
                  [make_scope("/", users[i % USERS]) for i in range(requests)]),
        "starlette": (app(starlette_route, Middleware(SessionMiddleware, secret_key=SECRET)),
                      [make_scope("/", starlette_cookies[i % USERS])
                       for i in range(requests)]),
        "warm": (jwt_app, [make_scope("/", users[i % USERS]) for i in range(requests)]),
        "first-sight": (jwt_app, [make_scope("/", cookie) for cookie in new]),
        "mix": (jwt_app, [make_scope("/", cookie) for cookie in mix]),
        "_warmup": (jwt_app, [make_scope("/", cookie) for cookie in fillers + users]),
        "_starlette_warmup": (app(starlette_route,
                                  Middleware(SessionMiddleware, secret_key=SECRET)),
                              [make_scope("/", c) for c in starlette_cookies[:10]]),
    }


def starlette_cookie(signer: Any, payload: dict[str, Any]) -> str:
    """A cookie value as Starlette's SessionMiddleware writes it."""
    import base64
    import json

    data = base64.b64encode(json.dumps(payload).encode("utf-8"))
    return str(signer.signer.sign(data).decode("utf-8"))


async def discard(message: Any) -> None:
    return None


async def serve(app: Any, scopes: list[dict[str, Any]]) -> None:
    for scope in scopes:
        await app(dict(scope), receive_empty, discard)


async def check(app: Any, scope: dict[str, Any], expected: bytes) -> None:
    status = 0
    body = b""

    async def send(message: Any) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")

    await app(dict(scope), receive_empty, send)
    if status != 200 or not body.endswith(expected):
        raise RuntimeError(f"expected 200 ...{expected!r}, got {status} {body!r}")


async def workload(scenario: str, requests: int, measured: bool) -> None:
    """Build everything, warm every app (the token cache full), then serve
    ``requests`` requests of ``scenario`` when ``measured``."""
    built = build(requests)
    warm_app, warm_scopes = built["_warmup"]
    await serve(warm_app, warm_scopes)  # fillers first: the users are the newest
    await check(warm_app, warm_scopes[-1], b"USER dark en-GB")
    starlette_app, starlette_scopes = built["_starlette_warmup"]
    await serve(starlette_app, starlette_scopes)
    await check(starlette_app, starlette_scopes[0], b"USER dark en-GB")
    for name in SCENARIOS:  # the same first request of each, in every run
        app, scopes = built[name]
        if name not in ("first-sight", "mix"):
            await check(app, scopes[0], b"dark en-GB")
    if measured:
        app, scopes = built[scenario]
        await serve(app, scopes)


def count(scenario: str, requests: int, measured: bool) -> int:
    """Instructions of one workload run under cachegrind."""
    with tempfile.TemporaryDirectory(prefix="ajs-instr-") as folder:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                   f"--cachegrind-out-file={Path(folder) / 'out'}",
                   sys.executable, "-m", "benchmarks.bench_instructions", "--workload",
                   scenario, "--requests", str(requests)]
        if not measured:
            command.append("--setup-only")
        env = dict(os.environ, PYTHONHASHSEED="0")
        done = subprocess.run(command, capture_output=True, env=env, check=False,
                              cwd=output.ROOT)
        if done.returncode != 0:
            raise RuntimeError(f"{scenario}: {done.stderr.decode(errors='replace')[-2000:]}")
        found = TOTAL.search(done.stderr)
        if found is None:
            raise RuntimeError(f"{scenario}: no instruction total in valgrind's output")
        return int(found.group(1).replace(b",", b""))


def run(requests: int = DEFAULT_REQUESTS, jobs: int = 2) -> dict[str, Any]:
    """Instructions per request of each scenario, and each one's cost over ``none``."""
    if shutil.which("valgrind") is None:
        raise SystemExit("bench_instructions needs valgrind (apt-get install valgrind)")
    results: dict[str, Any] = {"requests": requests, "machine": machine(),
                               "tool": "valgrind --tool=cachegrind", "scenarios": {}}
    with ThreadPoolExecutor(jobs) as pool:
        base = pool.submit(count, "none", requests, False)
        runs = {name: pool.submit(count, name, requests, True) for name in SCENARIOS}
        setup = base.result()
        per_request = {name: (job.result() - setup) / requests for name, job in runs.items()}
    none = per_request["none"]
    for name, value in per_request.items():
        results["scenarios"][name] = {"instructions": round(value),
                                      "over_none": round(value - none)}
    over = {name: entry["over_none"] for name, entry in results["scenarios"].items()}
    results["ratios"] = {
        "warm_to_floor": over["warm"] / over["floor"] if over["floor"] > 0 else None,
        "warm_to_starlette": over["warm"] / over["starlette"],
        "first_sight_to_starlette": over["first-sight"] / over["starlette"],
        "mix_to_starlette": over["mix"] / over["starlette"],
    }
    results["machine"]["loadavg_at_end"] = load_average()
    return results


def markdown(results: dict[str, Any]) -> str:
    """The instruction table: per request, and over no session."""
    scenarios = results["scenarios"]
    starlette = scenarios["starlette"]["over_none"]
    lines = [
        f"**Instructions per request** (`python -m benchmarks.bench_instructions`: "
        f"{results['requests']:,} requests per scenario under {results['tool']}, "
        "set-up subtracted; a Starlette route reading the user and three session values)",
        "",
        "| scenario | instructions | over none | / Starlette's |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in scenarios.items():
        ratio = "" if name == "none" else f"{entry['over_none'] / starlette:.2f}x"
        lines.append(f"| {name} | {entry['instructions']:,} | {entry['over_none']:,} "
                     f"| {ratio} |")
    ratios = results["ratios"]
    floor = ratios["warm_to_floor"]
    lines += ["", f"Warm is {floor:.2f}x the floor; first sight "
              f"{ratios['first_sight_to_starlette']:.2f}x Starlette's "
              "SessionMiddleware. Instruction counts do not move with the machine's "
              "load; time per instruction differs between scenarios (crypto is dense)."
              if floor is not None else "", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS)
    parser.add_argument("--workload", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    output.add_json_arguments(parser, "instructions.json")
    args = parser.parse_args()
    if args.workload:
        asyncio.run(workload(args.workload, args.requests, not args.setup_only))
        return
    results = run(args.requests)
    print(markdown(results))
    path = output.json_path(args, "instructions.json")
    output.write_json(results, path)
    if args.publish:
        output.update_docs_section(DOCS_MARKER, markdown(results))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
