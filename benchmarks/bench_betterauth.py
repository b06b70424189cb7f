"""Better Auth sessions in process: what reading one costs, beside this package's own
token and Auth.js's, and beside the per-request database read a service does without
the cookie cache ("what you would do otherwise").

Each line is the median time of one request through the session middleware around a
bare ASGI endpoint that reads the user, less the same endpoint without middleware:

- **warm**: the same cookie again (the front cache and the decoded-token cache hit);
- **first sight**: a cookie never seen before (the caches off: every request verifies
  or decrypts, parses and checks);
- **database read**: no cookie cache; the request's signed ``session_token`` is checked
  and its session read from Better Auth's tables on a loopback PostgreSQL
  (``BetterAuthTables.session(token=...)``, one query), as a service without the cookie
  cache does on every request. Skipped when PostgreSQL is not installed.

The Better Auth cookies are made here with Better Auth's own constructions (checked
against the real package by tests/test_betterauth.py), so the run needs no node.

    python -m benchmarks.bench_betterauth [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import platform
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from jwcrypto import jwe
from starlette.types import ASGIApp, Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, Keyring, auth
from asgi_jwt_session.authjs import AuthJSFormat, AuthJSWire
from asgi_jwt_session.betterauth import BETTER_AUTH_ROLES, BetterAuthFormat, jwe_key
from asgi_jwt_session.tokens import TokenWire
from benchmarks.inprocess import call, make_scope

SECRET = "benchmark-better-auth-secret-" + "x" * 24
JWS_HEADER = b'{"alg":"HS256"}'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cached_rows(now: datetime) -> dict[str, Any]:
    """The session and user rows Better Auth caches (admin plugin on), as it writes them."""
    iso = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    later = (now + timedelta(days=7)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "session": {"expiresAt": later, "token": "t" * 32, "createdAt": iso, "updatedAt": iso,
                    "ipAddress": "203.0.113.7", "userAgent": "Mozilla/5.0 bench",
                    "userId": "u" * 32, "impersonatedBy": None, "id": "s" * 32},
        "user": {"name": "Ada Lovelace", "email": "ada@example.com", "emailVerified": True,
                 "image": None, "createdAt": iso, "updatedAt": iso, "role": "user",
                 "banned": False, "banReason": None, "banExpires": None, "id": "u" * 32},
        "updatedAt": int(now.timestamp() * 1000),
        "version": "1",
    }


def better_auth_cookie(strategy: str) -> str:
    """A cookie cache as Better Auth writes it (5 minutes)."""
    now = datetime.now(UTC)
    rows = cached_rows(now)
    expires = int(now.timestamp()) + 300
    if strategy == "compact":
        cached = orjson.dumps(rows)
        ms = str(expires * 1000).encode()
        signed = cached[:-1] + b',"expiresAt":' + ms + b"}"
        signature = b64url(hmac.digest(SECRET.encode(), signed, hashlib.sha256))
        text = (b'{"session":' + cached + b',"expiresAt":' + ms + b',"signature":"'
                + signature.encode() + b'"}')
        return b64url(text)
    claims = {**rows, "iat": int(now.timestamp()), "exp": expires}
    if strategy == "jwt":
        message = f"{b64url(JWS_HEADER)}.{b64url(orjson.dumps(claims))}"
        mac = hmac.digest(SECRET.encode(), message.encode(), hashlib.sha256)
        return f"{message}.{b64url(mac)}"
    kid, raw = jwe_key(SECRET)
    from jwcrypto import jwk

    token = jwe.JWE(orjson.dumps({**claims, "jti": str(uuid.uuid4())}),
                    protected=orjson.dumps({"alg": "dir", "enc": "A256CBC-HS512",
                                            "kid": kid}).decode())
    token.add_recipient(jwk.JWK(kty="oct", k=b64url(raw)))
    return str(token.serialize(compact=True))


async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    session = auth(scope) if "session" in scope else None  # the baseline has no middleware
    body = session.user.id.encode() if session is not None and session.user else b"-"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def streams() -> dict[str, tuple[ASGIApp, str]]:
    """Name to (app, cookie header)."""
    now = int(time.time())
    ours = TokenWire(Keyring(SECRET)).encode({"sub": "u" * 32, "role": "USER", "iat": now,
                                       "exp": now + 3600, "jti": "j" * 22, "ver": 1,
                                       "chk": now, "auth_time": now,
                                       "name": "Ada Lovelace", "email": "ada@example.com"})
    authjs = AuthJSWire(SECRET, salt="authjs.session-token").encode(
        {"sub": "u" * 32, "role": "USER", "name": "Ada Lovelace", "email": "ada@example.com"})
    made: dict[str, tuple[ASGIApp, str]] = {"no session": (endpoint, "")}
    for cache, label in ((8192, "warm"), (0, "first sight")):
        made[f"this package, {label}"] = (
            JWTSessionMiddleware(endpoint, SECRET, cache_size=cache), f"session={ours}")
        made[f"Auth.js, {label}"] = (
            JWTSessionMiddleware(endpoint, SECRET, cache_size=cache, format=AuthJSFormat()),
            f"authjs.session-token={authjs}")
        for strategy in ("compact", "jwt", "jwe"):
            made[f"Better Auth {strategy}, {label}"] = (
                JWTSessionMiddleware(endpoint, SECRET, cache_size=cache,
                                     roles=BETTER_AUTH_ROLES,
                                     format=BetterAuthFormat(strategy)),
                f"better-auth.session_data={better_auth_cookie(strategy)}")
    return made


async def timed(app: ASGIApp, cookie: str, requests: int) -> list[int]:
    scope = make_scope("/", cookie or None)
    status, _, body = await call(app, dict(scope))
    assert (status == 200 and body != b"-") or not cookie, (status, body)
    samples = []
    for _ in range(requests):
        request = dict(scope)
        started = time.perf_counter_ns()
        await app(request, receive_nothing, discard)
        samples.append(time.perf_counter_ns() - started)
    return samples


async def receive_nothing() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Any) -> None:
    return None


async def database_read(requests: int) -> list[int] | None:
    """Per request: check the signed session_token and read its session and user."""
    from asgi_jwt_session.betterauth_sessions import BetterAuthSessions
    from asgi_jwt_session.store.betterauth import BetterAuthTables
    from support.servers import PostgresServer, ServerUnavailable

    try:
        server = PostgresServer()
        server.start()
    except ServerUnavailable:
        return None
    try:
        async with BetterAuthTables(server.dsn) as tables:
            database = tables.database
            await database.execute(
                'CREATE TABLE "user" (id text PRIMARY KEY, name text, email text, '
                '"emailVerified" boolean, image text, "createdAt" timestamptz, '
                '"updatedAt" timestamptz, role text, banned boolean, "banReason" text, '
                '"banExpires" timestamptz)')
            await database.execute(
                'CREATE TABLE session (id text PRIMARY KEY, "expiresAt" timestamptz, '
                'token text UNIQUE, "createdAt" timestamptz, "updatedAt" timestamptz, '
                '"ipAddress" text, "userAgent" text, "userId" text REFERENCES "user"(id), '
                '"impersonatedBy" text)')
            now = datetime.now(UTC)
            await database.execute(
                'INSERT INTO "user" VALUES (:id, \'Ada\', \'ada@example.com\', true, NULL, '
                ':now, :now, \'user\', false, NULL, NULL)', {"id": "u" * 32, "now": now})
            await database.execute(
                "INSERT INTO session VALUES (:id, :later, :token, :now, :now, '', '', :user, "
                "NULL)", {"id": "s" * 32, "later": now + timedelta(days=7),
                          "token": "t" * 32, "now": now, "user": "u" * 32})
            signature = base64.b64encode(hmac.digest(SECRET.encode(), b"t" * 32,
                                                     hashlib.sha256)).decode()
            cookie = f"{'t' * 32}.{signature}"
            sessions = BetterAuthSessions(tables, secret_key=SECRET)
            samples = []
            for _ in range(requests):
                started = time.perf_counter_ns()
                token = sessions.unsign(cookie)
                row = await tables.session(token=token)
                samples.append(time.perf_counter_ns() - started)
                assert row is not None and row.role == "user"
            return samples
    finally:
        server.close()


def run(requests: int) -> dict[str, float]:
    async def go() -> dict[str, list[int]]:
        samples = {}
        for name, (app, cookie) in streams().items():
            samples[name] = await timed(app, cookie, requests)
        reads = await database_read(max(200, requests // 10))
        if reads is not None:
            samples["Better Auth tables, a query per request (PostgreSQL, loopback)"] = reads
        return samples

    samples = asyncio.run(go())
    base = statistics.median(samples.pop("no session"))
    results = {}
    for name, values in samples.items():
        median = statistics.median(values)
        results[name] = (median if name.startswith("Better Auth tables") else median - base)
    return {name: value / 1000 for name, value in results.items()}


def markdown(results: dict[str, float]) -> str:
    reference = results.get("this package, warm") or 1.0
    lines = [f"Session cost per request, µs (median over the no-session request; "
             f"{platform.machine()}, Python {platform.python_version()}):", "",
             "| how the session is read | µs | x this package, warm |", "|---|---:|---:|"]
    for name, micros in results.items():
        lines.append(f"| {name} | {micros:.1f} | {micros / reference:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(markdown(run(args.requests)))


if __name__ == "__main__":
    main()
