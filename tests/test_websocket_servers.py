"""Websocket refusals as a real client sees them through real servers.

A close before accept reaches a client as a plain HTTP 403 whatever the reason, so the
guards' refusals use the ASGI websocket denial response where the server offers it
(401 / 403 with the JSON body) and otherwise accept and close at once with the code
(4401 / 4403). Both ways of installing the middleware: ``Middleware(...)`` inside a
Starlette app, and wrapping an app from outside that has ``exception_handlers``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from support.servers import serve
from tests.app_processes import ROOT

APP = "tests.websocket_app:app"

SERVERS: dict[str, list[str]] = {
    "uvicorn-websockets": ["uvicorn", APP, "--ws", "websockets", "--log-level", "warning"],
    "uvicorn-websockets-sansio": ["uvicorn", APP, "--ws", "websockets-sansio",
                                  "--log-level", "warning"],
    "uvicorn-wsproto": ["uvicorn", APP, "--ws", "wsproto", "--log-level", "warning"],
    "hypercorn": ["hypercorn", APP],
    "hypercorn-trio": ["hypercorn", APP, "--worker-class", "trio"],
    "granian": ["granian", "--interface", "asgi", APP],
    "daphne": ["daphne", APP],
}
# Servers without the websocket denial response: accepted, then closed with the code.
CLOSES = {"daphne"}


def command(server: str, port: int) -> list[str]:
    program, *args = SERVERS[server]
    if program == "uvicorn":
        args += ["--host", "127.0.0.1", "--port", str(port)]
    elif program == "hypercorn":
        args += ["--bind", f"127.0.0.1:{port}"]
    elif program == "granian":
        args += ["--host", "127.0.0.1", "--port", str(port)]
    else:
        args += ["-b", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", program, *args]


@pytest.fixture(scope="module", params=list(SERVERS))
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """``(server name, base URL)`` of the test app served by that server."""
    server: str = request.param
    process, port = serve(lambda port: command(server, port), cwd=ROOT)
    try:
        yield server, f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def cookie_for(base: str, prefix: str, role: str | None) -> dict[str, str]:
    if role is None:
        return {}
    response = httpx.get(f"http://{base}{prefix}/login", params={"user": "u1", "role": role})
    response.raise_for_status()
    return {"cookie": "; ".join(f"{name}={value}" for name, value in response.cookies.items())}


def outcome(base: str, path: str, headers: dict[str, str]) -> tuple[str, object, object]:
    """``("http", status, body)``, ``("closed", code, reason)`` or ``("message", text,
    None)``: what a websocket client sees."""
    try:
        with connect(f"ws://{base}{path}", additional_headers=headers, open_timeout=10,
                     close_timeout=5) as websocket:
            try:
                text = websocket.recv(timeout=10)
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return "closed", closed.rcvd.code, closed.rcvd.reason
            # The app closes after its message: wait for it rather than close from here at
            # the same moment (hypercorn's trio worker can exit on a close from both ends).
            with pytest.raises(ConnectionClosed):
                websocket.recv(timeout=10)
            return "message", text, None
    except InvalidStatus as refused:
        return "http", refused.response.status_code, json.loads(refused.response.body)


@pytest.mark.parametrize("prefix", ["", "/outside"], ids=["middleware-inside", "wrapped"])
@pytest.mark.parametrize(("role", "path", "status", "code", "detail"), [
    (None, "/ws/member", 401, 4401, "Not authenticated"),
    ("USER", "/ws/admin", 403, 4403, "Permission denied"),
], ids=["signed-out", "role-too-low"])
def test_a_refusal_reaches_a_real_client(served: tuple[str, str], prefix: str,
                                         role: str | None, path: str, status: int,
                                         code: int, detail: str) -> None:
    server, base = served
    seen = outcome(base, prefix + path, cookie_for(base, prefix, role))
    if server in CLOSES:
        assert seen[:2] == ("closed", code)
    else:
        assert seen == ("http", status, {"detail": detail})


@pytest.mark.parametrize("prefix", ["", "/outside"], ids=["middleware-inside", "wrapped"])
def test_an_allowed_websocket_is_served(served: tuple[str, str], prefix: str) -> None:
    _, base = served
    seen = outcome(base, prefix + "/ws/admin", cookie_for(base, prefix, "ADMIN"))
    assert seen == ("message", '{"hello":"u1"}', None)
