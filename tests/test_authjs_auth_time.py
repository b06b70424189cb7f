"""Auth.js write mode never invents a sign-in time (issue 19, 2.1): a token without
``auth_time`` that the Python side re-issues (a data change, the daily renewal) still has
none, so ``requires_fresh_login`` keeps refusing it; only a real sign-in sets one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import auth, login, requires_fresh_login
from asgi_jwt_session.authjs import AuthJSFormat
from tests.authjs_node import AuthJS
from tests.conftest import SECRET, Clock, cookie_value, make_app

PLAIN = "authjs.session-token"
DAY = 24 * 3600


@requires_fresh_login()
async def delete_account(request: Request) -> JSONResponse:
    return JSONResponse({"deleted": True})


async def note(request: Request) -> JSONResponse:
    session = auth(request)
    assert session is not None
    session["note"] = request.query_params.get("text", "x")
    return JSONResponse({"ok": True})


async def whoami(request: Request) -> JSONResponse:
    session = auth(request)
    return JSONResponse({"user": session.user.id if session and session.user else None})


async def sign_in_here(request: Request) -> JSONResponse:
    login(request, "user-1", "USER")
    return JSONResponse({"ok": True})


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    app = make_app(Route("/delete", delete_account, methods=["POST"]), Route("/note", note),
                   Route("/who", whoami), Route("/signin", sign_in_here),
                   format=AuthJSFormat(write=True))
    return client_for(app)


def authjs_token(authjs: AuthJS, **extra: Any) -> str:
    return authjs.encode({"sub": "user-1", "role": "USER", "email": "ada@example.com",
                          **extra}, SECRET, PLAIN)


def reissued(response: Any) -> str:
    return cookie_value(response.headers.get_list("set-cookie"), PLAIN)


def refused_as_not_fresh(client: TestClient, token: str) -> None:
    response = client.post("/delete", headers={"cookie": f"{PLAIN}={token}"})
    assert response.status_code == 401, response.text
    assert response.json()["reason"] == "reauthentication_required"


def test_a_data_change_gives_no_sign_in_time(client: TestClient, authjs: AuthJS) -> None:
    token = authjs_token(authjs)
    refused_as_not_fresh(client, token)
    response = client.get("/note", headers={"cookie": f"{PLAIN}={token}"})
    written = reissued(response)
    claims = authjs.decode(written, SECRET, PLAIN)
    assert "auth_time" not in claims and "rat" not in claims
    assert claims["sub"] == "user-1" and claims["data"] == {"note": "x"}
    refused_as_not_fresh(client, written)
    # And once more: a token the Python side wrote is re-issued the same way.
    again = reissued(client.get("/note?text=y", headers={"cookie": f"{PLAIN}={written}"}))
    assert "auth_time" not in authjs.decode(again, SECRET, PLAIN)
    refused_as_not_fresh(client, again)


def test_the_daily_renewal_gives_no_sign_in_time(client: TestClient, authjs: AuthJS,
                                                 clock: Clock) -> None:
    token = authjs_token(authjs)
    clock.now += 2 * DAY  # the token is two days old: due for renewal
    response = client.get("/who", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json() == {"user": "user-1"}
    written = reissued(response)
    claims = authjs.decode(written, SECRET, PLAIN)
    assert "auth_time" not in claims and claims["iat"] == int(clock.now)
    refused_as_not_fresh(client, written)


def test_a_sign_in_time_auth_js_wrote_is_kept(client: TestClient, authjs: AuthJS,
                                               clock: Clock) -> None:
    signed_in = int(clock.now) - 3 * DAY
    token = authjs_token(authjs, auth_time=signed_in)
    written = reissued(client.get("/note", headers={"cookie": f"{PLAIN}={token}"}))
    assert authjs.decode(written, SECRET, PLAIN)["auth_time"] == signed_in
    refused_as_not_fresh(client, written)  # three days old: not fresh either


def test_a_real_sign_in_is_fresh(client: TestClient, authjs: AuthJS) -> None:
    response = client.get("/signin")
    written = reissued(response)
    claims = authjs.decode(written, SECRET, PLAIN)
    assert isinstance(claims["auth_time"], int)
    response = client.post("/delete", headers={"cookie": f"{PLAIN}={written}"})
    assert response.status_code == 200 and response.json() == {"deleted": True}
