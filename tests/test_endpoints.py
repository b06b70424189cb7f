"""Session endpoints: the public view, refresh against a real store, sign-out, CSRF probes,
and the browser client.

Endpoints with an in-memory loader run on asyncio and trio; with a RoleStore (SQLite
file, real PostgreSQL) on asyncio only, as `databases` and its drivers are asyncio-only.
"""

from __future__ import annotations

import hmac
import inspect
import re
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from asgi_jwt_session import (
    CSRFError,
    JWTSessionMiddleware,
    TokenCodec,
    csrf_token,
    login,
    session_routes,
    set_csrf_cookie,
    verify_csrf,
)
from asgi_jwt_session.authjs import AuthJSCodec
from asgi_jwt_session.freshness import CheckedUser, Freshness
from asgi_jwt_session.store import RoleStore, StoreUnavailable, revoke_sessions, update_user_role
from tests.servers import PostgresServer

pytestmark = pytest.mark.anyio

SECRET = "s" * 40
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
BASE = "http://testserver"


# --- the app -------------------------------------------------------------------------


async def do_login(request: Request) -> JSONResponse:
    query = request.query_params
    claims = {"bio": query["bio"]} if "bio" in query else {}
    login(request, query["user"], query.get("role", "USER"),
          version=int(query.get("version", "1")), **claims)
    return JSONResponse({})


async def whoami(request: Request) -> JSONResponse:
    session = request.scope["session"]
    user = session.user
    return JSONResponse({"id": user and user.id, "role": user and user.role,
                         "version": session.version})


async def form_page(request: Request) -> Response:
    token = csrf_token(request)
    assert csrf_token(request) == token  # one token per request, minted or not
    response = HTMLResponse(f'<form method="post"><input name="csrf_token" value="{token}">')
    set_csrf_cookie(request, response)
    return response


async def form_post(request: Request) -> Response:
    await verify_csrf(request)
    form = await request.form()  # still readable after verify_csrf read the token field
    return PlainTextResponse(f"saved {form['name']}")


def make_app(*routes: BaseRoute, **middleware_options: Any) -> Starlette:
    return Starlette(
        routes=[
            *routes,
            Route("/login", do_login),
            Route("/whoami", whoami),
            Route("/form", form_page),
            Route("/form", form_post, methods=["POST"]),
        ],
        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET, **middleware_options)],
    )


class Users:
    """An in-memory user loader: ``{user_id: (role, version)}`` (or a ``CheckedUser``);
    ``down`` fakes an outage."""

    def __init__(self, **users: tuple[str, int] | CheckedUser) -> None:
        self.users = users
        self.calls = 0
        self.down = False

    async def __call__(self, user_id: str) -> tuple[str, int] | CheckedUser | None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("connection refused")
        return self.users.get(user_id)


def client_for(app: Starlette, base_url: str = BASE) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


def set_cookies(response: httpx.Response, name: str | None = None) -> list[str]:
    lines = response.headers.get_list("set-cookie")
    if name is None:
        return lines
    return [line for line in lines if re.match(rf"{re.escape(name)}(\.\d+)?=", line)]


def session_exp(client: httpx.AsyncClient) -> int:
    claims = TokenCodec(SECRET).decode(client.cookies["session"])
    exp: int = claims["exp"]
    return exp


async def fetch_token(client: httpx.AsyncClient, prefix: str = "/auth") -> str:
    token: str = (await client.get(f"{prefix}/session")).json()["csrfToken"]
    return token


@asynccontextmanager
async def signed_in(app: Starlette, user: str = "alice",
                    **query: str) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as client:
        response = await client.get("/login", params={"user": user, **query})
        assert response.status_code == 200
        yield client


@pytest.fixture
def users() -> Users:
    return Users(alice=("USER", 1))


@pytest.fixture
def app(users: Users) -> Starlette:
    return make_app(session_routes(user_loader=users))


# --- GET /auth/session -------------------------------------------------------------


async def test_session_anonymous(app: Starlette) -> None:
    async with client_for(app) as client:
        response = await client.get("/auth/session")
        assert response.status_code == 200
        token = response.json()["csrfToken"]
        assert response.json() == {"session": None, "csrfToken": token,
                                   "csrfHeader": "x-csrf-token"}
        assert TOKEN.fullmatch(token)
        assert response.headers["cache-control"] == "private, no-store"
        assert "cookie" in response.headers["vary"].lower()
        [line] = set_cookies(response)
        assert line.startswith(f"csrftoken={token};")
        attributes = [part.strip().lower() for part in line.split(";")[1:]]
        assert "path=/" in attributes and "samesite=lax" in attributes
        assert "httponly" not in attributes  # the client script reads the token
        assert "secure" not in attributes  # plain http
        assert not any(a.startswith(("max-age", "expires")) for a in attributes)

        again = await client.get("/auth/session")
        assert again.json()["csrfToken"] == token
        assert set_cookies(again) == []  # the cookie is kept, not re-sent


async def test_csrf_tokens_are_random_and_bad_cookies_are_replaced(app: Starlette) -> None:
    async with client_for(app) as one, client_for(app) as two:
        assert await fetch_token(one) != await fetch_token(two)
    async with client_for(app) as client:
        client.cookies.set("csrftoken", "short")
        response = await client.get("/auth/session")
        token = response.json()["csrfToken"]
        assert token != "short" and TOKEN.fullmatch(token)
        [line] = set_cookies(response, "csrftoken")
        assert line.startswith(f"csrftoken={token};")


async def test_csrf_cookie_is_secure_over_https(app: Starlette) -> None:
    async with client_for(app, "https://testserver") as client:
        response = await client.get("/auth/session")
        [line] = set_cookies(response, "csrftoken")
        assert "secure" in line.lower()


async def test_session_signed_in(app: Starlette) -> None:
    async with signed_in(app, role="USER", bio="not public") as client:
        response = await client.get("/auth/session")
        body = response.json()
        assert body["session"]["user"] == {"id": "alice", "role": "USER"}
        assert set(body) == {"session", "csrfToken", "csrfHeader"}
        assert set(body["session"]) == {"user", "expires"}
        expires = datetime.fromisoformat(body["session"]["expires"])
        assert body["session"]["expires"].endswith("Z")
        assert expires.timestamp() == session_exp(client)
        assert client.cookies["session"] not in response.text  # never the token
        assert "not public" not in response.text
        assert set_cookies(response, "session") == []  # reading does not re-issue


async def test_session_reports_the_expiry_of_a_reissued_cookie(
        users: Users, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(session_routes(user_loader=users), user_loader=users)
    async with signed_in(app) as client:
        before = session_exp(client)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 400)  # chk is revalidate_after old
        response = await client.get("/auth/session")
        assert set_cookies(response, "session")  # revalidated: the cookie is re-issued
        expires = datetime.fromisoformat(response.json()["session"]["expires"]).timestamp()
        assert expires >= before + 400 - 2
        assert abs(expires - session_exp(client)) <= 2
    assert users.calls == 1


async def test_get_makes_no_store_query(users: Users, app: Starlette) -> None:
    async with signed_in(app) as client:
        for _ in range(3):
            assert (await client.get("/auth/session")).status_code == 200
    assert users.calls == 0


# --- CSRF probes ---------------------------------------------------------------------


ENDPOINTS = ["/auth/session/refresh", "/auth/signout"]

REFUSED = [
    pytest.param({"sec-fetch-site": "cross-site"}, id="sec-fetch-site-cross-site"),
    pytest.param({"sec-fetch-site": "same-site"}, id="sec-fetch-site-same-site"),
    pytest.param({"sec-fetch-site": "cross-site", "origin": BASE}, id="cross-site-own-origin"),
    pytest.param({"origin": "http://evil.example"}, id="origin-evil"),
    pytest.param({"origin": "null"}, id="origin-null"),
    pytest.param({"origin": "https://testserver"}, id="origin-other-scheme"),
    pytest.param({"origin": "http://testserver:8080"}, id="origin-other-port"),
    pytest.param({"origin": "http://testserver.evil.example"}, id="origin-suffix"),
    pytest.param({"origin": "https://app.example"}, id="untrusted-origin"),
]

ALLOWED = [
    pytest.param({}, id="no-fetch-metadata"),
    pytest.param({"sec-fetch-site": "same-origin"}, id="sec-fetch-site-same-origin"),
    pytest.param({"sec-fetch-site": "none"}, id="sec-fetch-site-none"),
    pytest.param({"origin": BASE}, id="origin-own"),
    pytest.param({"origin": "HTTP://TestServer:80"}, id="origin-own-spelled-otherwise"),
    pytest.param({"sec-fetch-site": "same-origin", "origin": BASE}, id="both-same"),
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("headers", REFUSED)
async def test_cross_site_post_is_refused(app: Starlette, path: str,
                                          headers: dict[str, str]) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        response = await client.post(path, headers={"x-csrf-token": token, **headers})
        assert response.status_code == 403
        assert response.json()["detail"].startswith("CSRF check failed")
        assert set_cookies(response, "session") == []
        assert (await client.get("/whoami")).json()["id"] == "alice"  # nothing happened


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("headers", ALLOWED)
async def test_same_origin_post_passes(app: Starlette, path: str,
                                       headers: dict[str, str]) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        response = await client.post(path, headers={"x-csrf-token": token, **headers})
        assert response.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("cookie", "sent"),
    [
        pytest.param(None, None, id="neither"),
        pytest.param(None, "A" * 43, id="no-cookie"),
        pytest.param("cookie", None, id="no-header"),
        pytest.param("cookie", "B" * 43, id="other-token"),
        pytest.param("cookie", "cookie-prefix", id="prefix-of-token"),
        pytest.param("", "", id="both-empty"),
        pytest.param("short", "short", id="both-malformed"),
    ],
)
async def test_double_submit_token(app: Starlette, path: str, cookie: str | None,
                                   sent: str | None) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        client.cookies.delete("csrftoken")
        if cookie is not None:
            client.cookies.set("csrftoken", token if cookie == "cookie" else cookie)
        headers = {"sec-fetch-site": "same-origin"}
        if sent is not None:
            headers["x-csrf-token"] = token[:20] if sent == "cookie-prefix" else sent
        response = await client.post(path, headers=headers)
        assert response.status_code == 403
        assert (await client.get("/whoami")).json()["id"] == "alice"


async def test_token_compared_in_constant_time(app: Starlette,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr("asgi_jwt_session.csrf.hmac.compare_digest", spy)
    async with signed_in(app) as client:
        token = await fetch_token(client)
        assert (await client.post("/auth/signout", headers={"x-csrf-token": token})).is_success
    assert compared == [(token.encode(), token.encode())]


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_token_in_a_form_field(app: Starlette, path: str) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        wrong = await client.post(path, data={"csrf_token": "C" * 43})
        assert wrong.status_code == 403
        assert (await client.post(path, data={"csrf_token": token})).status_code == 200


async def test_token_in_a_multipart_form_field(app: Starlette) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        response = await client.post("/auth/signout", data={"csrf_token": token},
                                     files={"f": ("a.txt", b"x")})
        assert response.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_form_post_without_a_form_parser(app: Starlette, path: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # What Starlette has when python-multipart is not installed.
    monkeypatch.setattr("starlette.requests.parse_options_header", None)
    async with signed_in(app) as client:
        token = await fetch_token(client)
        response = await client.post(path, data={"csrf_token": token})
        assert response.status_code == 403
        assert response.json()["detail"] == "CSRF check failed: no CSRF token sent"
        assert (await client.get("/whoami")).json()["id"] == "alice"
        # The header still works; a sign-out form's `next` field cannot be read.
        response = await client.post(path + "?next=/bye", data={"next": "/elsewhere"},
                                     headers={"x-csrf-token": token, "accept": "text/html"})
        if path == "/auth/signout":
            assert response.status_code == 303 and response.headers["location"] == "/bye"
        else:
            assert response.status_code == 200


async def test_refused_browser_post_gets_a_403_page(app: Starlette) -> None:
    async with signed_in(app) as client:
        response = await client.post("/auth/signout", headers={"accept": "text/html"},
                                     data={"csrf_token": "D" * 43})
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("text/html")


async def test_trusted_origins(users: Users) -> None:
    app = make_app(session_routes(user_loader=users, trusted_origins=["https://app.example"]))
    async with signed_in(app) as client:
        token = await fetch_token(client)
        for site in ("cross-site", "same-site", None):
            headers = {"x-csrf-token": token, "origin": "https://app.example"}
            if site:
                headers["sec-fetch-site"] = site
            response = await client.post("/auth/session/refresh", headers=headers)
            assert response.status_code == 200
        other = {"x-csrf-token": token, "origin": "https://evil.example",
                 "sec-fetch-site": "cross-site"}
        assert (await client.post("/auth/session/refresh", headers=other)).status_code == 403
        # A trusted origin still needs the token.
        no_token = {"origin": "https://app.example", "sec-fetch-site": "cross-site"}
        assert (await client.post("/auth/session/refresh", headers=no_token)).status_code == 403


def test_trusted_origins_must_be_origins() -> None:
    for bad in ("app.example", "https://app.example/path", "ftp://app.example", "https://"):
        with pytest.raises(ValueError, match="not an origin"):
            session_routes(trusted_origins=[bad])


async def test_custom_csrf_names(users: Users) -> None:
    app = make_app(session_routes(user_loader=users, csrf_cookie="xsrf", csrf_header="x-xsrf"))
    async with signed_in(app) as client:
        token = await fetch_token(client)
        assert client.cookies["xsrf"] == token
        assert (await client.get("/auth/session")).json()["csrfHeader"] == "x-xsrf"
        refused = await client.post("/auth/signout", headers={"x-csrf-token": token})
        assert refused.status_code == 403
        assert (await client.post("/auth/signout", headers={"x-xsrf": token})).status_code == 200


async def test_csrf_helpers_for_app_forms(app: Starlette) -> None:
    async with client_for(app) as client:
        page = await client.get("/form")
        token = client.cookies["csrftoken"]
        assert f'value="{token}"' in page.text
        assert set_cookies(await client.get("/form"), "csrftoken") == []  # kept
        assert (await client.post("/form", data={"name": "x"})).status_code == 403
        cross = await client.post("/form", data={"name": "x", "csrf_token": token},
                                  headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        ok = await client.post("/form", data={"name": "x", "csrf_token": token})
        assert ok.status_code == 200 and ok.text == "saved x"


def test_csrf_error_is_a_403() -> None:
    assert CSRFError().status_code == 403


# --- POST /auth/session/refresh ------------------------------------------------------


async def test_refresh_reads_role_and_version(users: Users, app: Starlette) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        users.users["alice"] = ("ADMIN", 2)
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "private, no-store"
        view = response.json()["session"]
        assert view["user"] == {"id": "alice", "role": "ADMIN"}
        assert set_cookies(response, "session")  # re-issued
        assert abs(datetime.fromisoformat(view["expires"]).timestamp() - session_exp(client)) <= 2
        assert (await client.get("/whoami")).json() == {"id": "alice", "role": "ADMIN",
                                                        "version": 2}
        assert (await client.get("/auth/session")).json()["session"]["user"]["role"] == "ADMIN"
    assert users.calls == 1


async def test_refresh_ignores_claims_from_the_client(app: Starlette) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        forged = {"role": "ADMIN", "sub": "mallory", "ver": 99,
                  "session": {"user": {"id": "mallory", "role": "ADMIN"}}}
        response = await client.post("/auth/session/refresh", json=forged,
                                     headers={"x-csrf-token": token})
        assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
        response = await client.post("/auth/session/refresh",
                                      data={"csrf_token": token, "role": "ADMIN", "id": "bob"})
        assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
        assert (await client.get("/whoami")).json() == {"id": "alice", "role": "USER",
                                                        "version": 1}


async def test_refresh_anonymous_is_401(users: Users, app: Starlette) -> None:
    async with client_for(app) as client:
        token = await fetch_token(client)
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert response.json() == {"detail": "Not authenticated"}
    assert users.calls == 0


async def test_refresh_of_a_deleted_user_clears_the_session(users: Users,
                                                             app: Starlette) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        del users.users["alice"]
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        [line] = set_cookies(response, "session")
        assert "Max-Age=0" in line
        assert "session" not in client.cookies
        assert (await client.get("/auth/session")).json()["session"] is None


@pytest.mark.parametrize("version", [2, 3])  # revoked; revoked and the role changed
async def test_refresh_after_a_revocation_clears_the_session(users: Users, app: Starlette,
                                                             version: int) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        users.users["alice"] = CheckedUser("ADMIN", version, revoked_at=int(time.time()))
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert response.json() == {"detail": "Not authenticated"}
        [line] = set_cookies(response, "session")
        assert "Max-Age=0" in line
        assert "session" not in client.cookies
        assert (await client.get("/auth/session")).json()["session"] is None


async def test_refresh_keeps_a_session_signed_in_after_the_revocation(users: Users,
                                                                      app: Starlette) -> None:
    async with signed_in(app, version="2") as client:
        token = await fetch_token(client)
        users.users["alice"] = CheckedUser("ADMIN", 4, revoked_at=int(time.time()) - 1)
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 200
        assert response.json()["session"]["user"] == {"id": "alice", "role": "ADMIN"}
        assert (await client.get("/whoami")).json()["version"] == 4


async def test_refresh_with_the_store_down_keeps_the_session(users: Users,
                                                              app: Starlette) -> None:
    async with signed_in(app) as client:
        token = await fetch_token(client)
        cookie = client.cookies["session"]
        users.down = True
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 503
        assert set_cookies(response, "session") == []
        assert client.cookies["session"] == cookie
        assert (await client.get("/whoami")).json() == {"id": "alice", "role": "USER",
                                                        "version": 1}
        users.down = False
        users.users["alice"] = ("ORG_ADMIN", 2)
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.json()["session"]["user"]["role"] == "ORG_ADMIN"


async def test_refresh_with_the_database_refusing_connections(users: Users) -> None:
    async def refused(user_id: str) -> None:
        users.calls += 1
        raise ConnectionRefusedError("connection refused")

    app = make_app(session_routes(user_loader=refused))
    async with signed_in(app) as client:
        token = await fetch_token(client)
        cookie = client.cookies["session"]
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 503
        assert response.json()["detail"].startswith("The session store is unavailable")
        assert set_cookies(response, "session") == []
        assert client.cookies["session"] == cookie
        assert (await client.get("/whoami")).json()["id"] == "alice"
    assert users.calls == 1


async def test_refresh_with_a_hanging_store_times_out() -> None:
    async def hangs(user_id: str) -> None:
        await anyio.sleep_forever()

    app = make_app(session_routes(user_loader=hangs, timeout=0.05))
    async with signed_in(app) as client:
        token = await fetch_token(client)
        with anyio.fail_after(5):
            response = await client.post("/auth/session/refresh",
                                         headers={"x-csrf-token": token})
        assert response.status_code == 503
        assert set_cookies(response, "session") == []
        assert (await client.get("/whoami")).json()["id"] == "alice"


def test_refresh_timeout_is_the_revalidation_timeout() -> None:
    default = inspect.signature(session_routes).parameters["timeout"].default
    assert default == inspect.signature(Freshness).parameters["timeout"].default


AUTHJS_COOKIE = "authjs.session-token"


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_read_only_authjs_session(users: Users, path: str) -> None:
    token = AuthJSCodec(SECRET, salt=AUTHJS_COOKIE).encode({"sub": "alice", "role": "USER"})
    app = make_app(session_routes(user_loader=users), format="authjs")
    async with client_for(app) as client:
        client.cookies.set(AUTHJS_COOKIE, token)
        csrf = await fetch_token(client)
        response = await client.post(path, headers={"x-csrf-token": csrf})
        assert response.status_code == 409
        assert response.json()["detail"].endswith(
            "through Auth.js, or set authjs_write=True")
        assert response.headers["cache-control"] == "private, no-store"
        assert set_cookies(response, AUTHJS_COOKIE) == []
        assert client.cookies[AUTHJS_COOKIE] == token
        assert (await client.get("/whoami")).json()["id"] == "alice"
    assert users.calls == 0

    writable = make_app(session_routes(user_loader=users), format="authjs", authjs_write=True)
    async with client_for(writable) as client:
        client.cookies.set(AUTHJS_COOKIE, token)
        csrf = await fetch_token(client)
        response = await client.post(path, headers={"x-csrf-token": csrf})
        assert response.status_code == 200
        assert set_cookies(response, AUTHJS_COOKIE)  # written (re-issued or expired)


async def test_no_refresh_endpoint_without_a_loader() -> None:
    app = make_app(session_routes())
    async with signed_in(app) as client:
        token = await fetch_token(client)
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 404
        assert (await client.post("/auth/signout", headers={"x-csrf-token": token})).is_success


def test_store_or_loader_not_both(users: Users) -> None:
    with pytest.raises(TypeError):
        session_routes(RoleStore("sqlite:///unused.db"), user_loader=users)


# --- POST /auth/signout --------------------------------------------------------------


async def test_signout_expires_every_chunk(app: Starlette) -> None:
    async with client_for(app) as client:
        login_response = await client.get("/login", params={"user": "alice", "bio": "x" * 6000})
        chunks = sorted(line.split("=", 1)[0] for line in set_cookies(login_response, "session"))
        assert len(chunks) > 1 and all(re.fullmatch(r"session\.\d", c) for c in chunks)
        token = await fetch_token(client)
        assert (await client.get("/whoami")).json()["id"] == "alice"

        response = await client.post("/auth/signout", headers={"x-csrf-token": token})
        assert response.status_code == 200
        assert response.json() == {"session": None}
        lines = set_cookies(response, "session")
        assert sorted(line.split("=", 1)[0] for line in lines) == chunks
        assert all("Max-Age=0" in line for line in lines)
        assert not [name for name in client.cookies if name.startswith("session")]
        assert (await client.get("/auth/session")).json()["session"] is None


async def test_signout_from_an_html_form_redirects_on_site(app: Starlette) -> None:
    for next_url, location in [("/bye?x=1", "/bye?x=1"), ("//evil.example", "/"),
                               ("https://evil.example/", "/"), (None, "/")]:
        async with signed_in(app) as client:
            token = await fetch_token(client)
            data = {"csrf_token": token}
            if next_url is not None:
                data["next"] = next_url
            response = await client.post("/auth/signout", data=data,
                                         headers={"accept": "text/html,*/*;q=0.8"})
            assert response.status_code == 303
            assert response.headers["location"] == location
            assert (await client.get("/whoami")).json()["id"] is None


async def test_signout_is_post_only(app: Starlette) -> None:
    async with signed_in(app) as client:
        assert (await client.get("/auth/signout")).status_code == 405
        assert (await client.get("/whoami")).json()["id"] == "alice"


# --- the client script and prefixes --------------------------------------------------


SCRIPT = files("asgi_jwt_session").joinpath("static/session.js").read_bytes()


async def test_client_script(app: Starlette) -> None:
    async with client_for(app) as client:
        response = await client.get("/auth/session.js")
        assert response.status_code == 200
        assert response.content == SCRIPT
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        etag = response.headers["etag"]
        cached = await client.get("/auth/session.js", headers={"if-none-match": etag})
        assert cached.status_code == 304 and cached.content == b""
        changed = await client.get("/auth/session.js", headers={"if-none-match": '"old"'})
        assert changed.status_code == 200


async def test_any_prefix(users: Users) -> None:
    app = make_app(Mount("/v1", routes=[session_routes(user_loader=users, prefix="/api/auth")]))
    async with signed_in(app) as client:
        assert (await client.get("/auth/session")).status_code == 404
        token = await fetch_token(client, "/v1/api/auth")
        response = await client.post("/v1/api/auth/session/refresh",
                                     headers={"x-csrf-token": token})
        assert response.json()["session"]["user"]["id"] == "alice"
        assert (await client.get("/v1/api/auth/session.js")).content == SCRIPT
    root = Starlette(routes=[session_routes(prefix="")])
    assert root.url_path_for("auth:script") == "/session.js"
    assert app.url_path_for("auth:refresh") == "/v1/api/auth/session/refresh"


NODE_HARNESS = r"""
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import vm from "node:vm";

const source = readFileSync(process.argv[2], "utf8");
const requests = [];
let role = "USER";
let refreshGate = null;  // resolve() lets the pending refresh answer
let nextRefreshStatus = 200;
let failCsrfOnce = false;
let tokenCount = 0;
let announcedHeader = null;  // the csrfHeader GET /session names; none: an older server

function reply(status, body) {
  return { ok: status >= 200 && status < 300, status, url: "", json: async () => body };
}

async function fakeFetch(url, init) {
  requests.push({ url, method: init.method, headers: init.headers,
                  credentials: init.credentials });
  const path = new URL(url).pathname;
  if (path === "/app/v1/auth/session" && init.method === "GET") {
    tokenCount += 1;
    const body = { session: { user: { id: "alice", role } }, csrfToken: "token" + tokenCount };
    if (announcedHeader !== null) body.csrfHeader = announcedHeader;
    return reply(200, body);
  }
  if (init.headers[announcedHeader || "X-CSRF-Token"] !== "token" + tokenCount) {
    return reply(403, {});
  }
  if (failCsrfOnce) { failCsrfOnce = false; return reply(403, {}); }
  if (path === "/app/v1/auth/session/refresh") {
    await new Promise((resolve) => { refreshGate = resolve; });
    if (nextRefreshStatus !== 200) return reply(nextRefreshStatus, {});
    return reply(200, { session: { user: { id: "alice", role } } });
  }
  if (path === "/app/v1/auth/signout") return reply(200, { session: null });
  return reply(404, {});
}

function tab() {
  const context = { fetch: fakeFetch, BroadcastChannel, URL, setTimeout, console,
                    document: { currentScript: {
                      src: "http://site.example/app/v1/auth/session.js?v=3" } } };
  context.window = context;
  vm.createContext(context);
  vm.runInContext(source, context);
  return context.window.asgiJwtSession;
}

async function until(condition) {
  for (let i = 0; i < 200 && !condition(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(condition(), "timed out");
}

const a = tab();
const b = tab();
const seenByA = [];
const seenByB = [];
a.onChange((session) => seenByA.push(session));
const stop = b.onChange((session) => seenByB.push(session));

// getSession: the base path comes from the script's own URL.
assert.deepEqual(await a.getSession(), { user: { id: "alice", role: "USER" } });
assert.equal(requests[0].url, "http://site.example/app/v1/auth/session");
assert.equal(requests[0].credentials, "same-origin");

// Concurrent refreshes share one request.
role = "ADMIN";
const first = a.refreshSession();
const second = a.refreshSession();
assert.equal(first, second);
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
const [one, two] = await Promise.all([first, second]);
assert.deepEqual(one, { user: { id: "alice", role: "ADMIN" } });
assert.equal(one, two);
const posts = requests.filter((r) => r.method === "POST");
assert.equal(posts.length, 1);
assert.equal(posts[0].url, "http://site.example/app/v1/auth/session/refresh");
assert.equal(posts[0].headers["X-CSRF-Token"], "token1");
assert.equal(posts[0].credentials, "same-origin");

// This tab's listeners and the other tab's learn of it.
assert.deepEqual(seenByA, [one]);
await until(() => seenByB.length === 1);
assert.deepEqual(seenByB, [one]);

// Once settled, the next refresh is a new request; a 503 rejects and is not shared later.
nextRefreshStatus = 503;
const failing = a.refreshSession();
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
await assert.rejects(failing, (error) => error.status === 503);
nextRefreshStatus = 200;
const again = a.refreshSession();
assert.notEqual(again, failing);
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
await again;

// A 403 (the CSRF cookie changed) fetches the token again and retries once.
failCsrfOnce = true;
const before = requests.length;
assert.equal(await a.signOut(), null);
assert.deepEqual(requests.slice(before).map((r) => r.method), ["POST", "GET", "POST"]);
await until(() => seenByB.length === 3);
assert.equal(seenByB[2], null);
assert.equal(seenByA[seenByA.length - 1], null);

// A refresh answered 401 (signed out, or the user is gone) resolves null, broadcast.
stop();
nextRefreshStatus = 401;
const gone = b.refreshSession();
await until(() => refreshGate !== null);
refreshGate(); refreshGate = null;
assert.equal(await gone, null);
await until(() => seenByA.length === 4);
assert.equal(seenByA[3], null);
assert.equal(seenByB.length, 3);  // its listener was removed

// The server names its CSRF header (session_routes(csrf_header=...)): the client uses it.
announcedHeader = "x-xsrf";
const c = tab();
await c.getSession();
const start = requests.length;
assert.equal(await c.signOut(), null);
const sent = requests.slice(start);
assert.deepEqual(sent.map((r) => r.method), ["POST"]);
assert.equal(sent[0].headers["x-xsrf"], "token" + tokenCount);
assert.equal(sent[0].headers["X-CSRF-Token"], undefined);
console.log("ok");
process.exit(0);
"""


def test_client_script_in_node(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    harness = tmp_path / "harness.mjs"
    harness.write_text(NODE_HARNESS)
    script = tmp_path / "session.js"
    script.write_bytes(SCRIPT)
    result = subprocess.run([node, str(harness), str(script)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- with a RoleStore: SQLite file and real PostgreSQL (asyncio only) -------------------


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def table() -> str:
    return f"users_{uuid.uuid4().hex[:12]}"


async def store_flow(store: RoleStore, delete_user: Callable[[str], Any]) -> None:
    """Refresh against a real store: role update, no query on reads, disable, delete."""
    await store.create_tables()
    await store.create_user("alice", "USER", email="alice@example.com")
    await store.create_user("bob", "USER")
    app = make_app(session_routes(store))
    async with signed_in(app, version="1") as client:
        token = await fetch_token(client)
        refresh = {"x-csrf-token": token}
        await update_user_role(store, "alice", "ORG_ADMIN")
        queries = store.queries
        assert (await client.get("/auth/session")).json()["session"]["user"]["role"] == "USER"
        assert store.queries == queries  # reading the session: no query
        response = await client.post("/auth/session/refresh", headers=refresh)
        assert response.json()["session"]["user"] == {"id": "alice", "role": "ORG_ADMIN"}
        assert store.queries == queries + 1
        assert (await client.get("/whoami")).json() == {"id": "alice", "role": "ORG_ADMIN",
                                                        "version": 2}
        await store.set_disabled("alice", True)
        response = await client.post("/auth/session/refresh", headers=refresh)
        assert response.status_code == 401
        assert (await client.get("/auth/session")).json()["session"] is None

    async with signed_in(app, user="bob") as client:
        token = await fetch_token(client)
        await delete_user("bob")
        response = await client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert "session" not in client.cookies


@asyncio_only
async def test_refresh_with_sqlite_store(tmp_path: Path, table: str) -> None:
    path = tmp_path / "roles.db"

    async def delete_user(user_id: str) -> None:
        with sqlite3.connect(path) as connection:  # another process's connection, in effect
            connection.execute(f"DELETE FROM {table} WHERE id = ?", (user_id,))
        connection.close()

    async with RoleStore(f"sqlite:///{path}", table=table) as store:
        await store_flow(store, delete_user)


@asyncio_only
async def test_refresh_with_postgres_store(postgres: PostgresServer, table: str) -> None:
    import asyncpg

    async def delete_user(user_id: str) -> None:
        connection = await asyncpg.connect(postgres.dsn)
        try:
            await connection.execute(f"DELETE FROM {table} WHERE id = $1", user_id)
        finally:
            await connection.close()

    async with RoleStore(postgres.dsn, table=table) as store:
        await store_flow(store, delete_user)


@asyncio_only
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
async def test_refresh_after_revoke_sessions(request: pytest.FixtureRequest, tmp_path: Path,
                                             table: str, database: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'roles.db'}"
    if database == "postgres":
        url = request.getfixturevalue("postgres").dsn
    async with RoleStore(url, table=table) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        app = make_app(session_routes(store))
        async with signed_in(app, version="1") as client:
            token = await fetch_token(client)
            await revoke_sessions(store, "alice")
            await update_user_role(store, "alice", "ADMIN")
            response = await client.post("/auth/session/refresh",
                                         headers={"x-csrf-token": token})
            assert response.status_code == 401
            assert "session" not in client.cookies
            assert (await client.get("/auth/session")).json()["session"] is None

        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 1)  # the next second
        async with signed_in(app, version="3") as client:  # signed in after the revocation
            token = await fetch_token(client)
            await update_user_role(store, "alice", "ORG_ADMIN")
            response = await client.post("/auth/session/refresh",
                                         headers={"x-csrf-token": token})
            assert response.status_code == 200
            assert response.json()["session"]["user"] == {"id": "alice", "role": "ORG_ADMIN"}
            assert (await client.get("/whoami")).json()["version"] == 4


@asyncio_only
async def test_refresh_with_postgres_stopped(own_postgres: PostgresServer) -> None:
    async with RoleStore(own_postgres.dsn) as store:
        await store.create_tables()
        await store.create_user("alice", "USER")
        app = make_app(session_routes(store))
        async with signed_in(app) as client:
            token = await fetch_token(client)
            refresh = {"x-csrf-token": token}
            assert (await client.post("/auth/session/refresh", headers=refresh)).is_success
            await update_user_role(store, "alice", "ADMIN")
            cookie = client.cookies["session"]

            own_postgres.stop()
            for _ in range(3):  # pooled connections that died, and new ones that cannot
                response = await client.post("/auth/session/refresh", headers=refresh)
                assert response.status_code == 503
                assert response.json()["detail"].startswith("The session store is unavailable")
                assert set_cookies(response, "session") == []
                assert client.cookies["session"] == cookie
            view = (await client.get("/auth/session")).json()["session"]
            assert view["user"] == {"id": "alice", "role": "USER"}
            assert (await client.get("/whoami")).json()["version"] == 1

            own_postgres.start()
            response = await client.post("/auth/session/refresh", headers=refresh)
            assert response.status_code == 200
            assert response.json()["session"]["user"] == {"id": "alice", "role": "ADMIN"}
            assert client.cookies["session"] != cookie
            assert (await client.get("/whoami")).json()["version"] == 2
