"""Session endpoints: the public view, refresh (with a loader, the middleware's freshness,
a real store), sign-out, prefixes, and the browser client (also in node).

CSRF on these endpoints is in test_csrf.py. With a RoleStore (SQLite file, real
PostgreSQL) the tests run on asyncio only, as `databases` and its drivers are asyncio-only;
the app's lifespan opens the store, and ``client.portal.call`` runs store calls on the
app's event loop.
"""

from __future__ import annotations

import inspect
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from asgi_jwt_session.authjs import AuthJSCodec, AuthJSFormat
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.errors import StoreUnavailable
from asgi_jwt_session.freshness import CheckedUser, Freshness
from asgi_jwt_session.store import RoleStore, revoke_sessions, update_user_role
from asgi_jwt_session.tokens import TokenCodec
from support.servers import PostgresServer
from tests.conftest import (
    SECRET,
    Clock,
    Users,
    fetch_csrf,
    make_app,
    opening,
    set_cookies,
    sign_in,
)

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
ENDPOINTS = ["/auth/session/refresh", "/auth/signout"]
SCRIPT = files("asgi_jwt_session").joinpath("static/session.js")
JS = Path(__file__).resolve().parent / "js"
Client = Callable[..., TestClient]


@pytest.fixture
def app(users: Users) -> Starlette:
    return make_app(session_routes(user_loader=users))


@pytest.fixture
def client(client_for: Client, app: Starlette) -> TestClient:
    """Alice, signed in."""
    client = client_for(app)
    sign_in(client, "alice")
    return client


def whoami(client: TestClient) -> dict[str, Any]:
    body = client.get("/me").json()
    return {"id": body["id"], "role": body["role"], "version": body["version"]}


def session_exp(client: TestClient) -> int:
    exp: int = TokenCodec(SECRET).decode(client.cookies["session"])["exp"]
    return exp


def refresh(client: TestClient, prefix: str = "/auth") -> Any:
    return client.post(f"{prefix}/session/refresh",
                       headers={"x-csrf-token": fetch_csrf(client, prefix)})


# --- GET /auth/session -------------------------------------------------------------


def test_session_anonymous(client_for: Client, app: Starlette) -> None:
    client = client_for(app)
    response = client.get("/auth/session")
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

    again = client.get("/auth/session")
    assert again.json()["csrfToken"] == token
    assert set_cookies(again) == []  # the cookie is kept, not re-sent


def test_session_signed_in(client_for: Client, app: Starlette) -> None:
    client = client_for(app)
    sign_in(client, "alice", "USER", bio="not public")
    response = client.get("/auth/session")
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


def test_session_reports_the_expiry_of_a_reissued_cookie(client_for: Client, users: Users,
                                                         clock: Clock) -> None:
    client = client_for(make_app(session_routes(user_loader=users),
                                 freshness=Freshness(users)))
    sign_in(client, "alice")
    before = session_exp(client)
    clock.now += 400  # chk is revalidate_after old
    response = client.get("/auth/session")
    assert set_cookies(response, "session")  # revalidated: the cookie is re-issued
    expires = datetime.fromisoformat(response.json()["session"]["expires"]).timestamp()
    assert expires == before + 400 == session_exp(client)
    assert users.calls == 1


def test_get_makes_no_store_query(users: Users, client: TestClient) -> None:
    for _ in range(3):
        assert client.get("/auth/session").status_code == 200
    assert users.calls == 0


# --- POST /auth/session/refresh ------------------------------------------------------


def test_refresh_reads_role_and_version(users: Users, client: TestClient) -> None:
    users.users["alice"] = ("ADMIN", 2)
    response = refresh(client)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    view = response.json()["session"]
    assert view["user"] == {"id": "alice", "role": "ADMIN"}
    assert set_cookies(response, "session")  # re-issued
    assert abs(datetime.fromisoformat(view["expires"]).timestamp() - session_exp(client)) <= 2
    assert whoami(client) == {"id": "alice", "role": "ADMIN", "version": 2}
    assert client.get("/auth/session").json()["session"]["user"]["role"] == "ADMIN"
    assert users.calls == 1


def test_refresh_ignores_claims_from_the_client(client: TestClient) -> None:
    token = fetch_csrf(client)
    forged = {"role": "ADMIN", "sub": "mallory", "ver": 99,
              "session": {"user": {"id": "mallory", "role": "ADMIN"}}}
    response = client.post("/auth/session/refresh", json=forged,
                           headers={"x-csrf-token": token})
    assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
    response = client.post("/auth/session/refresh",
                           data={"csrf_token": token, "role": "ADMIN", "id": "bob"})
    assert response.json()["session"]["user"] == {"id": "alice", "role": "USER"}
    assert whoami(client) == {"id": "alice", "role": "USER", "version": 1}


def test_refresh_anonymous_is_401(client_for: Client, users: Users, app: Starlette) -> None:
    response = refresh(client_for(app))
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    assert users.calls == 0


def test_refresh_of_a_deleted_user_clears_the_session(users: Users, client: TestClient) -> None:
    del users.users["alice"]
    response = refresh(client)
    assert response.status_code == 401
    [line] = set_cookies(response, "session")
    assert "Max-Age=0" in line
    assert "session" not in client.cookies
    assert client.get("/auth/session").json()["session"] is None


@pytest.mark.parametrize("version", [2, 3])  # revoked; revoked and the role changed
def test_refresh_after_a_revocation_clears_the_session(users: Users, client: TestClient,
                                                       version: int) -> None:
    users.users["alice"] = CheckedUser("ADMIN", version, revoked_at=time.time())
    response = refresh(client)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    [line] = set_cookies(response, "session")
    assert "Max-Age=0" in line
    assert "session" not in client.cookies
    assert client.get("/auth/session").json()["session"] is None


def test_refresh_keeps_a_session_signed_in_after_the_revocation(
        client_for: Client, users: Users, app: Starlette) -> None:
    client = client_for(app)
    sign_in(client, "alice", version="2")
    users.users["alice"] = CheckedUser("ADMIN", 4, revoked_at=int(time.time()) - 1)
    response = refresh(client)
    assert response.status_code == 200
    assert response.json()["session"]["user"] == {"id": "alice", "role": "ADMIN"}
    assert whoami(client)["version"] == 4


def test_refresh_with_the_store_down_keeps_the_session(users: Users,
                                                       client: TestClient) -> None:
    cookie = client.cookies["session"]
    users.error = StoreUnavailable("connection refused")
    response = refresh(client)
    assert response.status_code == 503
    assert set_cookies(response, "session") == []
    assert client.cookies["session"] == cookie
    assert whoami(client) == {"id": "alice", "role": "USER", "version": 1}
    users.error = None
    users.users["alice"] = ("ORG_ADMIN", 2)
    assert refresh(client).json()["session"]["user"]["role"] == "ORG_ADMIN"


def test_refresh_with_the_database_refusing_connections(client_for: Client,
                                                        users: Users) -> None:
    users.error = ConnectionRefusedError("connection refused")
    client = client_for(make_app(session_routes(user_loader=users)))
    sign_in(client, "alice")
    cookie = client.cookies["session"]
    response = refresh(client)
    assert response.status_code == 503
    assert response.json()["detail"].startswith("The session store is unavailable")
    assert set_cookies(response, "session") == []
    assert client.cookies["session"] == cookie
    assert whoami(client)["id"] == "alice"
    assert users.calls == 1


def test_refresh_with_a_hanging_store_times_out(client_for: Client) -> None:
    async def hangs(user_id: str) -> None:
        await anyio.sleep(30)

    client = client_for(make_app(session_routes(user_loader=hangs, timeout=0.05)))
    sign_in(client, "alice")
    started = time.monotonic()
    response = refresh(client)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert set_cookies(response, "session") == []
    assert whoami(client)["id"] == "alice"


def test_refresh_timeout_is_the_revalidation_timeout() -> None:
    default = inspect.signature(session_routes).parameters["timeout"].default
    assert default == inspect.signature(Freshness).parameters["timeout"].default


def test_refresh_through_the_middlewares_freshness(client_for: Client, users: Users) -> None:
    client = client_for(make_app(session_routes(), freshness=Freshness(users)))
    sign_in(client, "alice")
    users.users["alice"] = ("ORG_ADMIN", 2)
    assert refresh(client).json()["session"]["user"] == {"id": "alice", "role": "ORG_ADMIN"}
    assert users.calls == 1


AUTHJS_COOKIE = "authjs.session-token"


@pytest.mark.parametrize("path", ENDPOINTS)
def test_read_only_authjs_session(client_for: Client, users: Users, path: str) -> None:
    token = AuthJSCodec(SECRET, salt=AUTHJS_COOKIE).encode({"sub": "alice", "role": "USER"})
    client = client_for(make_app(session_routes(user_loader=users), format=AuthJSFormat()))
    client.cookies.set(AUTHJS_COOKIE, token)
    response = client.post(path, headers={"x-csrf-token": fetch_csrf(client)})
    assert response.status_code == 409
    assert response.json()["detail"].endswith("through Auth.js, or use AuthJSFormat(write=True)")
    assert response.headers["cache-control"] == "private, no-store"
    assert set_cookies(response, AUTHJS_COOKIE) == []
    assert client.cookies[AUTHJS_COOKIE] == token
    assert whoami(client)["id"] == "alice"
    assert users.calls == 0

    writable = make_app(session_routes(user_loader=users), format=AuthJSFormat(write=True))
    client = client_for(writable)
    client.cookies.set(AUTHJS_COOKIE, token)
    response = client.post(path, headers={"x-csrf-token": fetch_csrf(client)})
    assert response.status_code == 200
    assert set_cookies(response, AUTHJS_COOKIE)  # written (re-issued or expired)


def test_no_refresh_endpoint_without_a_loader(client_for: Client) -> None:
    client = client_for(make_app(session_routes()))
    sign_in(client, "alice")
    token = fetch_csrf(client)
    response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
    assert response.status_code == 404
    assert client.post("/auth/signout", headers={"x-csrf-token": token}).is_success


def test_store_or_loader_not_both(users: Users) -> None:
    with pytest.raises(TypeError):
        session_routes(RoleStore("sqlite:///unused.db"), user_loader=users)


# --- POST /auth/signout --------------------------------------------------------------


def test_signout_expires_every_chunk(client_for: Client, app: Starlette) -> None:
    client = client_for(app)
    login_response = sign_in(client, "alice", bio="x" * 6000)
    chunks = sorted(line.split("=", 1)[0] for line in set_cookies(login_response, "session"))
    assert len(chunks) > 1 and all(re.fullmatch(r"session\.\d", c) for c in chunks)
    token = fetch_csrf(client)
    assert whoami(client)["id"] == "alice"

    response = client.post("/auth/signout", headers={"x-csrf-token": token})
    assert response.status_code == 200
    assert response.json() == {"session": None}
    lines = set_cookies(response, "session")
    assert sorted(line.split("=", 1)[0] for line in lines) == chunks
    assert all("Max-Age=0" in line for line in lines)
    assert not [name for name in client.cookies if name.startswith("session")]
    assert client.get("/auth/session").json()["session"] is None


@pytest.mark.parametrize(("next_url", "location"), [
    ("/bye?x=1", "/bye?x=1"), ("//evil.example", "/"), ("https://evil.example/", "/"),
    (None, "/"),
])
def test_signout_from_an_html_form_redirects_on_site(client: TestClient, next_url: str | None,
                                                     location: str) -> None:
    data = {"csrf_token": fetch_csrf(client)}
    if next_url is not None:
        data["next"] = next_url
    response = client.post("/auth/signout", data=data, headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 303
    assert response.headers["location"] == location
    assert whoami(client)["id"] is None


def test_signout_is_post_only(client: TestClient) -> None:
    assert client.get("/auth/signout").status_code == 405
    assert whoami(client)["id"] == "alice"


# --- the client script and prefixes --------------------------------------------------


def test_client_script(client_for: Client, app: Starlette) -> None:
    client = client_for(app)
    response = client.get("/auth/session.js")
    assert response.status_code == 200
    assert response.content == SCRIPT.read_bytes()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    etag = response.headers["etag"]
    cached = client.get("/auth/session.js", headers={"if-none-match": etag})
    assert cached.status_code == 304 and cached.content == b""
    changed = client.get("/auth/session.js", headers={"if-none-match": '"old"'})
    assert changed.status_code == 200


def test_any_prefix(client_for: Client, users: Users) -> None:
    app = make_app(Mount("/v1", routes=[session_routes(user_loader=users, prefix="/api/auth")]))
    client = client_for(app)
    sign_in(client, "alice")
    assert client.get("/auth/session").status_code == 404
    response = refresh(client, "/v1/api/auth")
    assert response.json()["session"]["user"]["id"] == "alice"
    assert client.get("/v1/api/auth/session.js").content == SCRIPT.read_bytes()
    root = Starlette(routes=[session_routes(prefix="")])
    assert root.url_path_for("auth:script") == "/session.js"
    assert app.url_path_for("auth:refresh") == "/v1/api/auth/session/refresh"


def test_client_script_in_node(node: str) -> None:
    with as_file(SCRIPT) as script:
        result = subprocess.run([node, str(JS / "session_client.mjs"), str(script)],
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


# --- with a RoleStore: SQLite file and real PostgreSQL (asyncio only) -------------------


asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def database_url(sqlite_or_postgres_url: str) -> str:
    return sqlite_or_postgres_url


async def delete_row(url: str, table: str, user_id: str) -> None:
    """Delete a user behind the store's back, as another process would."""
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as connection:
            connection.execute(f"DELETE FROM {table} WHERE id = ?", (user_id,))
        connection.close()
        return
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DELETE FROM {table} WHERE id = $1", user_id)
    finally:
        await connection.close()


@asyncio_only
def test_refresh_with_a_store(client_for: Client, database_url: str, table: str) -> None:
    """Refresh against a real store: role update, no query on reads, disable, delete."""
    store = RoleStore(database_url, table=table)
    app = make_app(session_routes(store), lifespan=opening(store))
    with client_for(app) as client:
        run = client.portal.call
        run(partial(store.create_user, "alice", "USER", email="alice@example.com"))
        run(store.create_user, "bob", "USER")
        sign_in(client, "alice", version="1")
        token = fetch_csrf(client)
        run(update_user_role, store, "alice", "ORG_ADMIN")
        queries = store.queries
        assert client.get("/auth/session").json()["session"]["user"]["role"] == "USER"
        assert store.queries == queries  # reading the session: no query
        response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.json()["session"]["user"] == {"id": "alice", "role": "ORG_ADMIN"}
        assert store.queries == queries + 1
        assert whoami(client) == {"id": "alice", "role": "ORG_ADMIN", "version": 2}
        run(store.set_disabled, "alice", True)
        response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert client.get("/auth/session").json()["session"] is None

        sign_in(client, "bob")
        token = fetch_csrf(client)
        run(delete_row, database_url, table, "bob")
        response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert "session" not in client.cookies


@asyncio_only
def test_refresh_after_revoke_sessions(client_for: Client, database_url: str, table: str,
                                       clock: Clock) -> None:
    store = RoleStore(database_url, table=table)
    app = make_app(session_routes(store), lifespan=opening(store))
    with client_for(app) as client:
        run = client.portal.call
        run(store.create_user, "alice", "USER")
        sign_in(client, "alice", version="1")
        token = fetch_csrf(client)
        revoked = run(revoke_sessions, store, "alice")
        run(update_user_role, store, "alice", "ADMIN")
        response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 401
        assert "session" not in client.cookies
        assert client.get("/auth/session").json()["session"] is None

        clock.now = int(revoked.revoked_at.timestamp()) + 1  # the second after it
        sign_in(client, "alice", version="3")  # signed in after the revocation
        token = fetch_csrf(client)
        run(update_user_role, store, "alice", "ORG_ADMIN")
        response = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
        assert response.status_code == 200
        assert response.json()["session"]["user"] == {"id": "alice", "role": "ORG_ADMIN"}
        assert whoami(client)["version"] == 4


@asyncio_only
def test_refresh_with_postgres_stopped(client_for: Client, own_postgres: PostgresServer) -> None:
    store = RoleStore(own_postgres.dsn)
    app = make_app(session_routes(store), lifespan=opening(store))
    with client_for(app) as client:
        run = client.portal.call
        run(store.create_user, "alice", "USER")
        sign_in(client, "alice")
        refresh_headers = {"x-csrf-token": fetch_csrf(client)}
        assert client.post("/auth/session/refresh", headers=refresh_headers).is_success
        run(update_user_role, store, "alice", "ADMIN")
        cookie = client.cookies["session"]

        own_postgres.stop()
        for _ in range(3):  # pooled connections that died, and new ones that cannot
            response = client.post("/auth/session/refresh", headers=refresh_headers)
            assert response.status_code == 503
            assert response.json()["detail"].startswith("The session store is unavailable")
            assert set_cookies(response, "session") == []
            assert client.cookies["session"] == cookie
        view = client.get("/auth/session").json()["session"]
        assert view["user"] == {"id": "alice", "role": "USER"}
        assert whoami(client)["version"] == 1

        own_postgres.start()
        response = client.post("/auth/session/refresh", headers=refresh_headers)
        assert response.status_code == 200
        assert response.json()["session"]["user"] == {"id": "alice", "role": "ADMIN"}
        assert client.cookies["session"] != cookie
        assert whoami(client)["version"] == 2
