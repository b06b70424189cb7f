"""What the session registry costs: the ordinary request with it on, and its queries.

1. Per-request cost in process (the in-process harness, middleware around a bare ASGI
   endpoint as in ``bench_freshness``): the warm JWT cookie with freshness on and no
   registry (twice: the difference between the two is the noise), and with a registry.
   They and the no-session baseline take turns request by request, order rotated, so
   machine drift lands on all alike. The registry's store counts its writes: an ordinary
   request must make none.
2. Statements sent to a real ``RoleStore`` (a SQLite file) per sign-in, ordinary request,
   renewal, revocation of one session, the revalidation it causes, and "sign out other
   devices", driven through the middleware as a browser would.

    python -m benchmarks.bench_registry [--requests N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from asgi_jwt_session import JWTSessionMiddleware, login
from asgi_jwt_session.freshness import CheckedUser, Freshness
from asgi_jwt_session.registry import SessionRegistry, revoke_other_sessions, revoke_session
from asgi_jwt_session.session import get_session
from asgi_jwt_session.store import RoleStore, StoredSession
from asgi_jwt_session.tokens import TokenCodec
from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app
from benchmarks.bench_freshness import fake_time
from benchmarks.strategies import BASELINE, read_jwt

SECRET = "benchmark-secret-" + "x" * 32
USER, ROLE = FIXED_USER


class CountingStore:
    """A registry store that counts writes (and a loader that always finds the user)."""

    def __init__(self) -> None:
        self.writes = 0

    async def record_session(self, session: StoredSession, *, first: bool) -> None:
        self.writes += 1

    async def __call__(self, user_id: str) -> CheckedUser:
        return CheckedUser(ROLE, 1)


def cookie_at(now: int) -> str:
    claims = {"sub": USER, "role": ROLE, "ver": 1, "chk": now, "jti": "j1", "iat": now,
              "exp": now + 30 * 86400, "auth_time": now}
    return "session=" + TokenCodec(SECRET).encode(claims)


def jwt_app(name: str, freshness: Freshness) -> inprocess.BenchApp:
    middleware = Middleware(JWTSessionMiddleware, secret_key=SECRET, freshness=freshness)
    return make_app(name, Setup([middleware]), read_jwt, bare=True)


def request_cost(requests: int) -> dict[str, Any]:
    """Request time and session cost over the baseline, registry off and on (µs)."""
    store = CountingStore()
    apps = [
        BASELINE.build(BenchConfig(secret=SECRET), bare=True),
        jwt_app("registry-off", Freshness(store)),
        jwt_app("registry-off-again", Freshness(store)),
        jwt_app("registry-on", Freshness(store, registry=SessionRegistry(store))),  # type: ignore[arg-type]
    ]
    scope = inprocess.make_scope("/", cookie_at(int(time.time())))
    body = f"{USER} {ROLE}".encode()
    streams = {app.name: inprocess.Stream(app, [scope] * 500, [body] * 500, [scope])
               for app in apps}
    samples = asyncio.run(inprocess.run_streams(streams, requests))
    if store.writes:
        raise RuntimeError("an ordinary request wrote to the registry")
    return inprocess.session_costs(samples, BASELINE.name)


async def statements() -> dict[str, int]:
    """Statements sent to a SQLite RoleStore for each step of a session's life."""
    with tempfile.TemporaryDirectory() as folder:
        store = RoleStore(f"sqlite:///{Path(folder) / 'bench.db'}",
                          sessions_table="user_sessions")

        async def sign_in(request: Request) -> PlainTextResponse:
            login(request, "alice", "USER", version=int(request.query_params["ver"]))
            return PlainTextResponse(get_session(request).jti or "")

        async def me(request: Request) -> PlainTextResponse:
            return PlainTextResponse("yes" if get_session(request).user else "no")

        async def others(request: Request) -> PlainTextResponse:
            await revoke_other_sessions(request)
            return PlainTextResponse("ok")

        freshness = Freshness(store, revalidate_after=3600,
                              registry=SessionRegistry(store))
        app = Starlette(routes=[Route("/login", sign_in), Route("/me", me),
                                Route("/others", others)],
                        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET,
                                               freshness=freshness, update_age=60)])
        counts: dict[str, int] = {}
        async with store:
            await store.create_tables()
            await store.create_user("alice", "USER")

            async def get(path: str, cookie: str | None) -> tuple[str, str | None]:
                _, headers, body = await inprocess.call(app, inprocess.make_scope(path, cookie))
                for pair in inprocess.set_cookies(headers):
                    if pair.startswith("session="):
                        cookie = pair if pair != "session=" else None
                return body.decode(), cookie

            def step(name: str, before: int) -> None:
                counts[name] = store.queries - before

            with fake_time(time.time()) as now:
                before = store.queries
                jti, laptop = await get("/login?ver=1", None)
                step("sign-in", before)
                _, phone = await get("/login?ver=1", None)
                before = store.queries
                for _ in range(100):
                    await get("/me", laptop)
                step("100 ordinary requests", before)
                now[0] += 61
                before = store.queries
                _, laptop = await get("/me", laptop)
                step("renewal", before)
                _, phone = await get("/me", phone)
                before = store.queries
                await revoke_session(store, jti)
                step("revoke one session", before)
                before = store.queries
                answer, _ = await get("/me", laptop)
                assert answer == "no", "the revoked session was served"
                step("revalidation after it (per process)", before)
                _, laptop = await get("/login?ver=2", None)
                before = store.queries
                await get("/others", laptop)
                step("sign out other devices", before)
    return counts


def run(requests: int = 20000) -> dict[str, Any]:
    return {"request_cost": request_cost(requests), "statements": asyncio.run(statements())}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    output.add_json_arguments(parser, "registry.json")
    args = parser.parse_args()
    results = run(args.requests)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {args.requests} requests each")
    print(f"{'warm JWT cookie, freshness on':<32}{'median µs':>12}{'p99 µs':>10}   "
          f"(cost over {BASELINE.name})")
    for name, entry in results["request_cost"].items():
        if name != BASELINE.name:
            c = entry["session_cost_us"]
            print(f"{name:<32}{c['median']:>12.2f}{c['p99']:>10.2f}")
    print()
    print("statements sent to the store (SQLite RoleStore with sessions_table)")
    for name, count in results["statements"].items():
        print(f"  {name:<40}{count:>3}")
    path = output.json_path(args, "registry.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
