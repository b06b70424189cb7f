"""examples/betterauth_fastapi as its README runs it: the real Better Auth server
(auth.mjs, node) signs users in over HTTP; the FastAPI service reads their sessions,
from the cookie cache alone, and with Better Auth's PostgreSQL tables."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from examples.betterauth_fastapi.api import create_app
from support.servers import PostgresServer
from tests.betterauth_node import PASSWORD, BetterAuth, cookies_of
from tests.conftest import new_database

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "betterauth_fastapi"
SECRET = "example-better-auth-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AuthServer:
    """auth.mjs running in node, with the tests' installed better-auth."""

    def __init__(self, betterauth: BetterAuth, **env: str) -> None:
        shutil.copy(EXAMPLE / "auth.mjs", betterauth.workdir / "example_auth.mjs")
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.proc = subprocess.Popen(
            [betterauth.node, "example_auth.mjs"], cwd=betterauth.workdir,
            env={**os.environ, "BETTER_AUTH_SECRET": SECRET, "PORT": str(self.port), **env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # "Better Auth on ..." once it listens
        assert line.startswith("Better Auth on"), line

    def post(self, path: str, body: dict[str, str],
             cookies: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(f"{self.url}/api/auth{path}", json=body, cookies=cookies,
                          headers={"origin": self.url})

    def sign_up(self, email: str) -> dict[str, str]:
        response = self.post("/sign-up/email",
                             {"email": email, "password": PASSWORD, "name": "Ada"})
        assert response.status_code == 200, response.text
        return cookies_of(response.headers.get_list("set-cookie"))

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# What the server runs with, and the strategy its cookie cache then has.
MODES = {"compact": {"COOKIE_CACHE_STRATEGY": "compact"},
         "jwt": {"COOKIE_CACHE_STRATEGY": "jwt"},
         "jwe": {"COOKIE_CACHE_STRATEGY": "jwe"},
         "stateless": {"STATELESS": "1"}}


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def auth_server(betterauth: BetterAuth, mode: str) -> Iterator[AuthServer]:
    server = AuthServer(betterauth, **MODES[mode])
    try:
        yield server
    finally:
        server.close()


def get(client: TestClient, path: str, cookies: dict[str, str]) -> httpx.Response:
    return client.get(path, headers={"cookie": "; ".join(f"{k}={v}" for k, v in
                                                         cookies.items())})


def test_the_api_reads_better_auth_sessions(auth_server: AuthServer, mode: str) -> None:
    chosen = "jwe" if mode == "stateless" else mode  # stateless mode: jwe
    cookies = auth_server.sign_up(f"ada-{uuid.uuid4().hex[:6]}@example.com")
    assert "better-auth.session_data" in cookies
    client = TestClient(create_app(secret_key=SECRET, strategy=chosen))  # type: ignore[arg-type]
    me = get(client, "/api/me", cookies)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "user" and me.json()["name"] == "Ada"
    assert get(client, "/api/admin/stats", cookies).status_code == 403
    assert get(client, "/api/greeting", cookies).json() == {"greeting": "Hello, Ada!"}
    assert get(client, "/api/me", {}).status_code == 401
    other = TestClient(create_app(secret_key="another-secret-0123456789abcdefghij",
                                  strategy=chosen))  # type: ignore[arg-type]
    assert get(other, "/api/me", cookies).status_code == 401


def test_the_api_with_better_auth_tables(betterauth: BetterAuth,
                                         postgres: PostgresServer) -> None:
    database = new_database(postgres.dsn, "example")
    server = AuthServer(betterauth, DATABASE_URL=database, COOKIE_CACHE_STRATEGY="jwt")
    try:
        cookies = server.sign_up("grace@example.com")
        with TestClient(create_app(secret_key=SECRET, strategy="jwt",
                                   database_url=database)) as client:
            token_only = {"better-auth.session_token": cookies["better-auth.session_token"]}
            assert get(client, "/api/me", cookies).json()["email"] == "grace@example.com"
            assert get(client, "/api/me", token_only).json()["email"] == "grace@example.com"
            response = server.post("/sign-out", {}, cookies)
            assert response.status_code == 200, response.text
            for _ in range(200):  # the trigger's NOTIFY reaches the feed
                if get(client, "/api/me", cookies).status_code == 401:
                    break
                time.sleep(0.025)
            assert get(client, "/api/me", cookies).status_code == 401
            assert get(client, "/api/me", token_only).status_code == 401
    finally:
        server.close()
