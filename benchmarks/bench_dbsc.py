"""What device binding (DBSC) costs: the ordinary request of a bound session, and the
refresh the browser makes once per ``bound_lifetime``.

In process and interleaved with the no-session baseline (the in-process harness,
middleware around a bare endpoint, both with ``device_binding=DeviceBinding()`` and a
freshness policy whose loader counts its calls):

- the ordinary request with an unbound and with a bound session cookie (the bound
  token carries the device's public key in ``cnf``): the queries made (0) and the cost;
- the proof check alone (``verify_proof``), ES256 (what Chromium signs) and RS256;
- the whole signed refresh request (the challenge asked first, outside the timing):
  proof check, challenge check, the new cookie and refresh cookie, the configuration.

    python -m benchmarks.bench_dbsc [--requests N] [--refreshes N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
from typing import Any

import orjson
from jwcrypto import jwk, jws
from starlette.middleware import Middleware

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.dbsc import DeviceBinding
from asgi_jwt_session.dbsc_proof import public_jwk, verify_proof
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.tokens import TokenCodec
from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app
from benchmarks.strategies import BASELINE, read_jwt

SECRET = "benchmark-secret-" + "x" * 32
USER, ROLE = FIXED_USER
REFRESH = "/auth/dbsc/refresh"


class CountingLoader:
    """A freshness loader that counts its calls (a query each)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, user_id: str) -> tuple[str, int]:
        self.calls += 1
        return ROLE, 1


def device(kty: str) -> tuple[jwk.JWK, str]:
    if kty == "EC":
        return jwk.JWK.generate(kty="EC", crv="P-256"), "ES256"
    return jwk.JWK.generate(kty="RSA", size=2048), "RS256"


def proof(key: jwk.JWK, alg: str, challenge: str) -> str:
    token = jws.JWS(orjson.dumps({"jti": challenge}))
    token.add_signature(key, alg=alg, protected=orjson.dumps({"alg": alg, "typ": "dbsc+jwt"})
                        .decode())
    compact: str = token.serialize(compact=True)
    return compact


def claims(now: int, cnf: dict[str, Any] | None = None) -> dict[str, Any]:
    value = {"sub": USER, "role": ROLE, "ver": 1, "jti": "j1", "iat": now, "chk": now,
             "exp": now + (600 if cnf else 86400), "auth_time": now}
    if cnf is not None:
        value["cnf"] = cnf
    return value


def jwt_app(name: str, loader: CountingLoader) -> tuple[inprocess.BenchApp, DeviceBinding]:
    binding = DeviceBinding()
    middleware = Middleware(JWTSessionMiddleware, secret_key=SECRET, max_cookie_size=3800,
                            device_binding=binding,
                            freshness=Freshness(loader, revalidate_after=3600))
    return make_app(name, Setup([middleware]), read_jwt, bare=True), binding


def median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def time_verify(kty: str, rounds: int) -> float:
    key, alg = device(kty)
    public = public_jwk(key.export_public(as_dict=True), alg)
    proofs = [proof(key, alg, f"challenge-{index}") for index in range(rounds)]
    verify_proof(proofs[0], public)  # loads jwcrypto
    samples = []
    for compact in proofs:
        start = time.perf_counter_ns()
        verify_proof(compact, public)
        samples.append(time.perf_counter_ns() - start)
    return median_us(samples)


async def time_refresh(rounds: int) -> tuple[float, int]:
    """The signed refresh request through the middleware (median µs), and the Set-Cookie
    bytes it answers with."""
    loader = CountingLoader()
    bench, binding = jwt_app("refresh", loader)
    key, alg = device("EC")
    cnf = {"jwk": public_jwk(key.export_public(as_dict=True), alg)}
    now = int(time.time())
    refresh_token = binding.refresh_codec.encode(claims(now, cnf) | {"exp": now + 86400})
    cookie = f"{binding.refresh_writer.name}={refresh_token}".encode()
    samples = []
    sent = 0
    for _ in range(rounds + 1):
        scope = inprocess.make_scope(REFRESH)
        scope["method"], scope["scheme"] = "POST", "https"
        scope["headers"] += [(b"cookie", cookie), (b"sec-secure-session-id", b"j1")]
        status, headers, _ = await inprocess.call(bench.app, scope)
        assert status == 403, status
        challenge = dict(headers)[b"secure-session-challenge"].decode().split('"')[1]
        signed = dict(scope, headers=[*scope["headers"], (b"secure-session-response",
                                                          proof(key, alg, challenge).encode())])
        start = time.perf_counter_ns()
        status, headers, _ = await inprocess.call(bench.app, signed)
        samples.append(time.perf_counter_ns() - start)
        assert status == 200, status
        sent = sum(len(value) for name, value in headers if name == b"set-cookie")
    return median_us(samples[1:]), sent


def run(requests: int = 20000, refreshes: int = 300) -> dict[str, Any]:
    now = int(time.time())
    key, alg = device("EC")
    cnf = {"jwk": public_jwk(key.export_public(as_dict=True), alg)}
    codec = TokenCodec(SECRET)
    unbound = inprocess.make_scope("/", "session=" + codec.encode(claims(now)))
    bound = inprocess.make_scope("/", "session=" + codec.encode(claims(now, cnf)))
    body = f"{USER} {ROLE}".encode()
    loaders = {"unbound": CountingLoader(), "bound": CountingLoader()}
    feeds = {
        BASELINE.name: (BASELINE.build(BenchConfig(secret=SECRET), bare=True), unbound),
        "unbound": (jwt_app("unbound", loaders["unbound"])[0], unbound),
        "bound": (jwt_app("bound", loaders["bound"])[0], bound),
    }
    streams = {name: inprocess.Stream(app, [scope], [body], [scope])
               for name, (app, scope) in feeds.items()}
    samples = asyncio.run(inprocess.run_streams(streams, requests))
    costs = inprocess.session_costs(samples, BASELINE.name)
    refresh_us, set_cookie_bytes = asyncio.run(time_refresh(refreshes))
    return {
        "request_cost": costs,
        "queries": {name: loader.calls for name, loader in loaders.items()},
        "verify_es256_us": time_verify("EC", refreshes),
        "verify_rs256_us": time_verify("RSA", refreshes),
        "refresh_request_us": refresh_us,
        "refresh_set_cookie_bytes": set_cookie_bytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--refreshes", type=int, default=300)
    output.add_json_arguments(parser, "dbsc.json")
    args = parser.parse_args()
    results = run(args.requests, args.refreshes)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, {args.requests} requests each")
    print(f"{'ordinary request':<20}{'median µs':>12}{'p99 µs':>10}{'queries':>9}"
          f"   (cost over {BASELINE.name})")
    for name, entry in results["request_cost"].items():
        if name != BASELINE.name:
            cost = entry["session_cost_us"]
            print(f"{name:<20}{cost['median']:>12.2f}{cost['p99']:>10.2f}"
                  f"{results['queries'][name]:>9}")
    print(f"proof check: ES256 {results['verify_es256_us']:.0f} µs, "
          f"RS256 {results['verify_rs256_us']:.0f} µs; the signed refresh request "
          f"{results['refresh_request_us']:.0f} µs, "
          f"{results['refresh_set_cookie_bytes']} bytes of Set-Cookie "
          f"(once per bound_lifetime per active browser)")
    path = output.json_path(args, "dbsc.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
