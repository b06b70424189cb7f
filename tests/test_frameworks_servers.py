"""The middleware behind every ASGI server a user may pick, each a real process on
loopback: uvicorn (h11 and httptools), hypercorn (asyncio and trio), granian and daphne.
The flow (sign in, read, sign out), keep-alive, several Set-Cookie lines in one
response, HEAD, and a streamed response that writes the session."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from support.servers import serve
from tests.app_processes import ROOT
from tests.framework_apps.server_app import BLOB

APP = "tests.framework_apps.server_app:app"
PY = [sys.executable, "-m"]

SERVERS = {
    "uvicorn-h11": lambda port: [*PY, "uvicorn", APP, "--port", str(port), "--http", "h11",
                                 "--log-level", "warning"],
    "uvicorn-httptools": lambda port: [*PY, "uvicorn", APP, "--port", str(port),
                                       "--http", "httptools", "--log-level", "warning"],
    "hypercorn-asyncio": lambda port: [*PY, "hypercorn", APP, "--bind", f"127.0.0.1:{port}",
                                       "-k", "asyncio"],
    "hypercorn-trio": lambda port: [*PY, "hypercorn", APP, "--bind", f"127.0.0.1:{port}",
                                    "-k", "trio"],
    "granian": lambda port: [*PY, "granian", "--interface", "asgi", "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", APP],
    "daphne": lambda port: [*PY, "daphne", "-b", "127.0.0.1", "-p", str(port), APP],
}


# Servers that send the headers given with websocket.accept (docs/frameworks.md says
# granian and daphne do not: a cookie set on the handshake does not reach the browser).
ACCEPT_HEADERS = {"uvicorn-h11", "uvicorn-httptools", "hypercorn-asyncio", "hypercorn-trio"}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    process, port = serve(SERVERS[request.param], cwd=ROOT)
    try:
        yield request.param, f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def url(server: tuple[str, str]) -> str:
    return server[1]


def session_lines(response: httpx.Response) -> list[str]:
    return [line for line in response.headers.get_list("set-cookie")
            if line.startswith(("session=", "session."))]


def test_flow_over_one_connection(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        first = client.get("/me").json()
        assert first["user"] is None
        (line,) = session_lines(client.get("/login", params={"user": "alice"}))
        assert "HttpOnly" in line
        body = client.get("/me").json()
        assert body["user"] == "alice"
        assert body["client"] == first["client"]  # the same connection: kept alive
        response = client.post("/logout")
        (line,) = session_lines(response)
        assert "Max-Age=0" in line or "expires=Thu, 01 Jan 1970" in line
        assert client.get("/me").json()["user"] is None


def test_several_set_cookie_lines(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        client.get("/login", params={"user": "alice"})
        response = client.post("/big")
        lines = response.headers.get_list("set-cookie")
        assert len(session_lines(response)) >= 3
        assert any(line.startswith("theme=dark") for line in lines)
        assert client.get("/me").json() == {"user": "alice", "blob": len(BLOB),
                                            "client": client.get("/me").json()["client"]}


def test_head(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        client.get("/login", params={"user": "alice"})
        response = client.head("/me")
        assert response.status_code == 200 and response.content == b""
        assert "cookie" in response.headers["vary"].lower()
        assert session_lines(response) == []  # read, not re-issued


def test_streamed_response_writes_the_session(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client, client.stream("GET", "/stream") as r:
        assert len(session_lines(r)) == 1
        assert b"".join(r.iter_bytes()) == b"".join(f"chunk {i}\n".encode() for i in range(5))


def test_websocket_accept_sets_the_cookie(server: tuple[str, str]) -> None:
    name, url = server
    with connect(url.replace("http", "ws") + "/ws") as socket:
        assert socket.recv() == "hello"
        with pytest.raises(ConnectionClosed):  # the app's close, not one from both ends
            socket.recv(timeout=10)
        lines = socket.response.headers.get_all("set-cookie")
    if name in ACCEPT_HEADERS:
        assert [line for line in lines if line.startswith("session=")]
    else:
        assert lines == []  # the server's limitation, documented
