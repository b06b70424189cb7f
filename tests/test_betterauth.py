"""Better Auth's cookie cache, read against the real ``better-auth``: each strategy and
stateless mode signs the user in with the role Better Auth gave them; anything else
(tampered, expired, another secret, another strategy) reads as signed out, never 5xx."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, SessionUser, auth, require_role
from asgi_jwt_session.betterauth import (
    BETTER_AUTH_ROLES,
    BetterAuthFormat,
    BetterAuthWire,
    betterauth_cookie_name,
    betterauth_secrets_from_env,
)
from asgi_jwt_session.codec import Codec, b64url_encode
from asgi_jwt_session.dependencies import CurrentUser, RequireRole
from asgi_jwt_session.errors import ExpiredToken, InvalidToken
from tests.betterauth_node import SECRET, BetterAuth, cookies_of

DATA = "better-auth.session_data"
TOKEN = "better-auth.session_token"
STRATEGIES = ["compact", "jwt", "jwe"]


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None:
        return JSONResponse({"id": None})
    user = session.user
    return JSONResponse({"id": user.id, "role": user.role, "jti": session.jti,
                         "claims": user.claims,
                         "actor": session.actor.user.id if session.actor else None})


async def admin_only(request: Request) -> JSONResponse:
    user = require_role(request, "admin")
    return JSONResponse({"id": user.id})


def python_app(strategy: str, secret: Any = SECRET, **options: Any) -> Starlette:
    return Starlette(routes=[Route("/me", me), Route("/admin", admin_only)], middleware=[
        Middleware(JWTSessionMiddleware, secret_key=secret, roles=BETTER_AUTH_ROLES,
                   format=BetterAuthFormat(strategy, **options))])  # type: ignore[arg-type]


def read(client: TestClient, cookies: dict[str, str], path: str = "/me") -> dict[str, Any]:
    response = client.get(path, headers={"cookie": "; ".join(f"{k}={v}" for k, v in
                                                             cookies.items())})
    assert response.status_code < 500, response.text
    assert not response.headers.get_list("set-cookie")  # read-only: never writes
    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return body


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def client(strategy: str) -> TestClient:
    return TestClient(python_app(strategy))


def client_for(app: Starlette) -> TestClient:
    return TestClient(app)


def codec(strategy: str, secret: Any = SECRET) -> Codec:
    return Codec(BetterAuthWire(secret, strategy=strategy), cache_size=0)  # type: ignore[arg-type]


def test_each_strategy_reads_the_user_and_role(betterauth: BetterAuth, strategy: str,
                                               client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    user_id, cookies = app.sign_up(f"alice-{strategy}@example.com")
    assert DATA in cookies
    body = read(client, cookies)
    assert body["id"] == user_id and body["role"] == "user"
    assert body["claims"]["email"] == f"alice-{strategy}@example.com"
    assert body["claims"]["name"] == "Alice"
    assert "token" not in body["claims"]
    assert body["jti"] == app.get_session(cookies)["session"]["id"]
    # The same cookie, read again (the decoded-token cache and the front cache).
    assert read(client, cookies)["id"] == user_id


def test_role_from_the_admin_plugin_passes_the_guards(betterauth: BetterAuth, strategy: str,
                                                     client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    user_id, cookies = app.sign_up(f"root-{strategy}@example.com")
    assert client.get("/admin", headers={"cookie": f"{DATA}={cookies[DATA]}",
                                         "accept": "application/json"}).status_code == 403
    app.update_user(user_id, role="admin")
    cookies = app.sign_in(f"root-{strategy}@example.com")
    assert read(client, cookies, "/admin") == {"id": user_id}


def test_stateless_mode(betterauth: BetterAuth) -> None:
    app = betterauth.app(stateless=True)
    user_id, cookies = app.sign_up("stateless@example.com")
    assert app.get_session(cookies)["user"]["id"] == user_id  # Better Auth reads it too
    body = read(client_for(python_app("jwe")), cookies)
    assert body["id"] == user_id and body["role"] == "user"


def test_https_cookie_names(betterauth: BetterAuth, strategy: str, client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy}, secure=True,
                         baseURL="https://localhost:3000")
    user_id, cookies = app.sign_up(f"secure-{strategy}@example.com")
    assert betterauth_cookie_name(True) in cookies
    assert read(client, cookies)["id"] == user_id


def test_chunked_cookie_cache(betterauth: BetterAuth, strategy: str,
                              client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    user_id, _ = app.sign_up(f"chunky-{strategy}@example.com", name="N" * 6000)
    cookies = app.sign_in(f"chunky-{strategy}@example.com")
    assert f"{DATA}.0" in cookies and f"{DATA}.1" in cookies and DATA not in cookies
    body = read(client, cookies)
    assert body["id"] == user_id and body["claims"]["name"] == "N" * 6000


def test_impersonation_names_the_admin(betterauth: BetterAuth, strategy: str,
                                       client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    admin_id, _ = app.sign_up(f"imp-admin-{strategy}@example.com")
    app.update_user(admin_id, role="admin")
    admin = app.sign_in(f"imp-admin-{strategy}@example.com")
    user_id, _ = app.sign_up(f"imp-user-{strategy}@example.com")
    reply = app.request("POST", "/admin/impersonate-user", admin, body={"userId": user_id})
    assert reply["status"] == 200, reply
    cookies = {**admin, **cookies_of(reply["setCookie"])}
    body = read(client, cookies)
    assert body["id"] == user_id and body["actor"] == admin_id


def test_signed_out_cookies(betterauth: BetterAuth, strategy: str, client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    _, cookies = app.sign_up(f"out-{strategy}@example.com")
    reply = app.request("POST", "/sign-out", cookies, body={})
    expired = {line.split("=", 1)[0] for line in reply["setCookie"] if "Max-Age=0" in line}
    assert {DATA, TOKEN} <= expired
    jar = {name: value for name, value in cookies.items() if name not in expired}
    assert read(client, jar)["id"] is None


# --- refused: tampered, expired, another secret, another strategy -----------------------------


def flip(value: str, at: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return value[:at] + alphabet[(alphabet.index(value[at]) + 1) % 64] + value[at + 1:]


def test_tampered_cookies_read_as_signed_out(betterauth: BetterAuth, strategy: str,
                                             client: TestClient) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    _, cookies = app.sign_up(f"tamper-{strategy}@example.com")
    value = cookies[DATA]
    for at in range(0, len(value) - 1, max(1, len(value) // 25)):
        body = read(client, {**cookies, DATA: flip(value, at)})
        assert body["id"] is None, at
    for bad in ("", "x", value + "A", value[:-3], "a.b.c", "a.b.c.d.e", value + "." + value):
        assert read(client, {**cookies, DATA: bad})["id"] is None


def test_role_edited_in_a_compact_cookie_is_refused(betterauth: BetterAuth) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": "compact"})
    _, cookies = app.sign_up("edit@example.com")
    text = base64.urlsafe_b64decode(cookies[DATA] + "==")
    assert b'"role":"user"' in text
    edited = base64.urlsafe_b64encode(text.replace(b'"role":"user"', b'"role":"admin"'))
    assert read(client_for(python_app("compact")), {DATA: edited.rstrip(b"=").decode()}) == \
        {"id": None}


def test_another_secret_reads_as_signed_out(betterauth: BetterAuth, strategy: str) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy},
                         secret="someone-else's-better-auth-secret-0123456789")
    _, cookies = app.sign_up(f"foreign-{strategy}@example.com")
    assert read(client_for(python_app(strategy)), cookies)["id"] is None
    with pytest.raises(InvalidToken):
        codec(strategy).decode(cookies[DATA])


def test_another_strategy_reads_as_signed_out(betterauth: BetterAuth, strategy: str) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy})
    _, cookies = app.sign_up(f"wrong-{strategy}@example.com")
    for other in STRATEGIES:
        if other != strategy:
            assert read(client_for(python_app(other)), cookies)["id"] is None
            with pytest.raises(InvalidToken):
                codec(other).decode(cookies[DATA])


def test_expired_cookie_cache_reads_as_signed_out(betterauth: BetterAuth, strategy: str,
                                                  client: TestClient,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy, "maxAge": 60})
    user_id, cookies = app.sign_up(f"late-{strategy}@example.com")
    decoded = codec(strategy).decode(cookies[DATA])
    assert decoded["exp"] - time.time() < 61
    with pytest.raises(ExpiredToken):
        codec(strategy).decode(cookies[DATA], now=decoded["exp"] + 11)
    assert codec(strategy).decode(cookies[DATA], now=decoded["exp"] - 1)["sub"]
    assert read(client, cookies)["id"] == user_id
    late = float(decoded["exp"] + 11)  # past the middleware's 10 s of leeway
    monkeypatch.setattr(time, "time", lambda: late)
    assert read(client, cookies)["id"] is None


def test_another_cache_version_reads_as_signed_out(betterauth: BetterAuth, strategy: str) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy, "version": "2"})
    user_id, cookies = app.sign_up(f"v2-{strategy}@example.com")
    assert read(client_for(python_app(strategy)), cookies)["id"] is None
    assert read(client_for(python_app(strategy, version="2")), cookies)["id"] == user_id


def test_versioned_secrets(betterauth: BetterAuth, strategy: str) -> None:
    old = "old-better-auth-secret-0123456789abcdefgh"
    new = "new-better-auth-secret-0123456789abcdefgh"
    app = betterauth.app(cookieCache={"enabled": True, "strategy": strategy},
                         secrets=[{"version": 2, "value": new}, {"version": 1, "value": old}])
    user_id, cookies = app.sign_up(f"rotated-{strategy}@example.com")
    assert read(client_for(python_app(strategy, [new, old])), cookies)["id"] == user_id
    assert read(client_for(python_app(strategy, [old])), cookies)["id"] is None


def test_forged_payloads_are_refused() -> None:
    import hashlib
    import hmac

    def jwt(payload: dict[str, Any], header: dict[str, Any] | None = None) -> str:
        def seg(value: Any) -> str:
            return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

        signed = f"{seg(header or {'alg': 'HS256'})}.{seg(payload)}"
        mac = hmac.digest(SECRET.encode(), signed.encode(), hashlib.sha256)
        return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    now = int(time.time())
    good = {"session": {"id": "s1", "userId": "u1", "expiresAt": "2999-01-01T00:00:00.000Z"},
            "user": {"id": "u1", "role": "admin"}, "updatedAt": now * 1000, "version": "1",
            "iat": now, "exp": now + 300}
    assert codec("jwt").decode(jwt(good))["role"] == "admin"
    for several, highest in (("user,admin", "admin"), ("admin, user", "admin"),
                             ("user,editor", "user"), ("editor,owner", "editor,owner")):
        payload = {**good, "user": {"id": "u1", "role": several}}
        assert codec("jwt").decode(jwt(payload))["role"] == highest
    bad_payloads: list[dict[str, Any]] = [
        {**good, "user": {"id": "u2", "role": "admin"}},  # the session is another user's
        {**good, "user": {"id": "u1", "role": ["admin"]}},
        {**good, "user": {"id": "u1", "banned": True}},
        {**good, "user": {"id": None}},
        {**good, "session": {**good["session"], "expiresAt": "2001-01-01T00:00:00Z"}},
        {**good, "session": {**good["session"], "expiresAt": "tomorrow"}},
        {**good, "version": "2"},
        {k: v for k, v in good.items() if k != "exp"},
        {**good, "exp": "soon"},
    ]
    for payload in bad_payloads:
        with pytest.raises(InvalidToken):
            codec("jwt").decode(jwt(payload))
    for header in ({"alg": "none"}, {"alg": "HS512"}, {"alg": "HS256", "kid": "x"},
                   {"alg": "HS256", "crit": ["b64"]}, {"alg": "RS256"}):
        with pytest.raises(InvalidToken):
            codec("jwt").decode(jwt(good, header))


def test_secrets_from_env() -> None:
    assert betterauth_secrets_from_env({"BETTER_AUTH_SECRET": "a"}) == ["a"]
    assert betterauth_secrets_from_env({"AUTH_SECRET": "b"}) == ["b"]
    assert betterauth_secrets_from_env(
        {"BETTER_AUTH_SECRETS": "2:new, 1:old", "BETTER_AUTH_SECRET": "legacy"}
    ) == ["new", "old", "legacy"]
    assert betterauth_secrets_from_env(
        {"BETTER_AUTH_SECRETS": "2:new,1:old", "BETTER_AUTH_SECRET": "old"}) == ["new", "old"]
    for env in ({}, {"BETTER_AUTH_SECRET": "better-auth-secret-12345678901234567890"},
                {"BETTER_AUTH_SECRETS": "new"}, {"BETTER_AUTH_SECRETS": "1:a,1:b"}):
        with pytest.raises(ValueError):
            betterauth_secrets_from_env(env)


def fastapi_app() -> FastAPI:
    api = FastAPI()
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET,  # type: ignore[arg-type]
                       roles=BETTER_AUTH_ROLES, format=BetterAuthFormat("jwt"))

    @api.get("/me")
    async def whoami(user: CurrentUser) -> dict[str, str]:
        return {"id": user.id, "role": user.role}

    @api.get("/admin")
    async def admin(user: Annotated[SessionUser, RequireRole("admin")]) -> dict[str, str]:
        return {"id": user.id}

    return api


def test_fastapi_dependencies(betterauth: BetterAuth) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": "jwt"})
    user_id, cookies = app.sign_up("fastapi@example.com")
    client = TestClient(fastapi_app())
    header = {"cookie": f"{DATA}={cookies[DATA]}"}
    assert client.get("/me", headers=header).json() == {"id": user_id, "role": "user"}
    assert client.get("/admin", headers=header).status_code == 403
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"cookie": f"{DATA}=forged"}).status_code == 401
    app.update_user(user_id, role="admin")
    cookies = app.sign_in("fastapi@example.com")
    assert client.get("/admin", headers={"cookie": f"{DATA}={cookies[DATA]}"}).json() == \
        {"id": user_id}


def test_the_benchmark_reads_its_sessions() -> None:
    """benchmarks/bench_betterauth.py makes Better Auth cookies itself: each one reads
    as the signed-in user (so its figures are for sessions read, not refused)."""
    import asyncio

    from benchmarks.bench_betterauth import streams, timed

    for name, (app, cookie) in streams().items():
        if cookie:
            assert len(asyncio.run(timed(app, cookie, 2))) == 2, name


def test_signing_out_here_is_answered_and_writes_nothing(betterauth: BetterAuth,
                                                         tmp_path: Path) -> None:
    """logout() on a Better Auth session (read-only, with the tables' freshness hook):
    the response has no cookie to write, and never a 500."""
    from starlette.middleware import Middleware as Mw

    from asgi_jwt_session import logout
    from asgi_jwt_session.betterauth_sessions import BetterAuthSessions
    from asgi_jwt_session.store.betterauth import BetterAuthTables

    async def sign_out(request: Request) -> JSONResponse:
        logout(request)
        return JSONResponse({"id": None})

    sessions = BetterAuthSessions(BetterAuthTables(f"sqlite:///{tmp_path}/unused.db"),
                                  secret_key=SECRET)
    api = Starlette(routes=[Route("/me", me), Route("/logout", sign_out)], middleware=[
        Mw(JWTSessionMiddleware, secret_key=SECRET, roles=BETTER_AUTH_ROLES,  # type: ignore[arg-type]
           format=BetterAuthFormat("compact"), freshness=sessions)])
    app = betterauth.app(cookieCache={"enabled": True, "strategy": "compact"})
    user_id, cookies = app.sign_up("leaving@example.com")
    client = TestClient(api)
    assert read(client, cookies)["id"] == user_id
    assert read(client, cookies, "/logout") == {"id": None}
    assert sessions.queries == 0


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STRATEGIES),
       st.one_of(st.text(max_size=300),
                 st.recursive(st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats()
                              | st.text(max_size=20),
                              lambda inner: st.lists(inner, max_size=4)
                              | st.dictionaries(st.sampled_from(
                                  ["session", "user", "id", "userId", "expiresAt", "role",
                                   "exp", "iat", "updatedAt", "version", "banned",
                                   "impersonatedBy", "signature"]), inner, max_size=6),
                              max_leaves=20).map(lambda v: b64url_encode(orjson.dumps(v)))))
def test_any_input_is_refused_as_invalid_token(strategy: str, value: str) -> None:
    """Whatever a cookie holds, decoding it raises InvalidToken (never anything else)."""
    with pytest.raises(InvalidToken):
        codec(strategy).decode(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["session", "user", "updatedAt", "version", "iat",
                                        "exp"]),
                       st.none() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
                       | st.dictionaries(st.sampled_from(["id", "userId", "expiresAt",
                                                         "role", "banned", "banExpires",
                                                         "impersonatedBy"]),
                                         st.none() | st.integers(-(2**53), 2**53) | st.booleans()
                                         | st.text(max_size=30), max_size=7),
                       max_size=6))
def test_signed_payloads_of_any_shape_never_crash(payload: dict[str, Any]) -> None:
    """Signed with the right secret but of any shape: a session or InvalidToken."""
    import hashlib
    import hmac

    header = b64url_encode(b'{"alg":"HS256"}')
    signed = f"{header}.{b64url_encode(orjson.dumps(payload))}"
    mac = hmac.digest(SECRET.encode(), signed.encode(), hashlib.sha256)
    # The same payload as a compact cookie cache, signed as Better Auth signs it.
    cached, expires = orjson.dumps(payload), b"%d" % ((int(time.time()) + 60) * 1000)
    signature = b64url_encode(hmac.digest(
        SECRET.encode(), cached[:-1] + (b"," if payload else b"") + b'"expiresAt":' + expires
        + b"}", hashlib.sha256))
    compact = b64url_encode(b'{"session":' + cached + b',"expiresAt":' + expires
                            + b',"signature":"' + signature.encode() + b'"}')
    for strategy, token in (("jwt", f"{signed}.{b64url_encode(mac)}"), ("compact", compact)):
        try:
            claims = codec(strategy).decode(token)
        except InvalidToken:
            continue
        assert isinstance(claims["sub"], str) and isinstance(claims["role"], str)


def test_the_feed_keeps_changes_as_long_as_a_cache_may_be_used(tmp_path: Path) -> None:
    from asgi_jwt_session.betterauth_sessions import BetterAuthSessions
    from asgi_jwt_session.freshness import VersionFeed
    from asgi_jwt_session.store.betterauth import BetterAuthTables

    tables = BetterAuthTables(f"sqlite:///{tmp_path}/unused.db")
    feed = VersionFeed()
    BetterAuthSessions(tables, secret_key=SECRET, feed=feed)
    assert feed.max_age == 300 + 60
    BetterAuthSessions(tables, secret_key=SECRET, feed=feed, revalidate_after=900)
    assert feed.max_age == 900 + 60
    mine = VersionFeed(max_age=30)
    BetterAuthSessions(tables, secret_key=SECRET, feed=mine)
    assert mine.max_age == 30


def test_several_roles_from_the_admin_plugin(betterauth: BetterAuth) -> None:
    app = betterauth.app(cookieCache={"enabled": True, "strategy": "compact"})
    admin_id, _ = app.sign_up("several-admin@example.com")
    app.update_user(admin_id, role="admin")
    admin = app.sign_in("several-admin@example.com")
    user_id, _ = app.sign_up("several@example.com")
    app.set_role(admin, user_id, ["user", "admin"])  # type: ignore[arg-type]
    cookies = app.sign_in("several@example.com")
    assert app.get_session(cookies)["user"]["role"] == "user,admin"
    assert read(TestClient(python_app("compact")), cookies, "/admin") == {"id": user_id}


def test_compact_cache_whose_rows_look_like_its_end() -> None:
    """A compact cache is read from its end: a user field that looks like the
    expiry-and-signature tail (a JSON field of the app's) does not confuse it."""
    import hashlib
    import hmac

    now = int(time.time())
    rows = {"session": {"id": "s1", "userId": "u1", "expiresAt": "2999-01-01T00:00:00.000Z"},
            "user": {"id": "u1", "role": "user",
                     "prefs": {"a": 1, "expiresAt": 1, "signature": "A" * 43}},
            "updatedAt": now * 1000, "version": "1"}
    cached, expires = orjson.dumps(rows), b"%d" % ((now + 60) * 1000)
    mac = hmac.digest(SECRET.encode(), cached[:-1] + b',"expiresAt":' + expires + b"}",
                      hashlib.sha256)
    text = (b'{"session":' + cached + b',"expiresAt":' + expires + b',"signature":"'
            + b64url_encode(mac).encode() + b'"}')
    assert codec("compact").decode(b64url_encode(text))["sub"] == "u1"


def test_a_ban_in_any_truthy_spelling_is_refused() -> None:
    """``banned`` as an adapter without booleans stores it (1) reads as banned too; only
    ``false``, ``0`` or no value let the user in."""
    import hashlib
    import hmac

    now = int(time.time())
    header = b64url_encode(b'{"alg":"HS256"}')

    def token(banned: Any) -> str:
        payload = {"session": {"id": "s1", "userId": "u1",
                               "expiresAt": "2999-01-01T00:00:00.000Z"},
                   "user": {"id": "u1", "banned": banned}, "updatedAt": now * 1000,
                   "version": "1", "iat": now, "exp": now + 300}
        signed = f"{header}.{b64url_encode(orjson.dumps(payload))}"
        mac = hmac.digest(SECRET.encode(), signed.encode(), hashlib.sha256)
        return f"{signed}.{b64url_encode(mac)}"

    for allowed in (None, False, 0):
        assert codec("jwt").decode(token(allowed))["sub"] == "u1"
    for banned in (True, 1, "true"):
        with pytest.raises(InvalidToken, match="banned"):
            codec("jwt").decode(token(banned))
