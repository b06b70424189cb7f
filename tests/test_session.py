"""The session: data, users, login and logout, expiry, what one request may change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import auth, login
from tests.conftest import Clock, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]


def test_login_and_logout(client_for: Client) -> None:
    client = client_for()
    client.post("/session", json={"cart": [1]})
    first = sign_in(client, "alice", "ADMIN").json()["jti"]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({"cart": [1]}, "alice", "ADMIN")

    # Signing in again issues a new session id (no fixation).
    second = sign_in(client, "alice", "ADMIN").json()["jti"]
    assert second != first
    # Another user signing in drops the previous user's data.
    sign_in(client, "bob")
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, "bob", "USER")

    response = client.get("/logout")
    assert "Max-Age=0" in set_cookies(response)[0]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, None, None)


def test_clear_signs_the_user_out(client_for: Client) -> None:
    client = client_for()
    sign_in(client, "u1")
    response = client.post("/clear")
    assert "Max-Age=0" in set_cookies(response)[0]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, None, None)


def test_login_refuses_reserved_claims(client_for: Client) -> None:
    async def bad_login(request: Request) -> PlainTextResponse:
        with pytest.raises(ValueError, match="reserved"):
            login(request, "u", "USER", exp=1)
        with pytest.raises(ValueError):
            login(request, "", "USER")
        return PlainTextResponse("ok")

    assert client_for(make_app(Route("/", bad_login))).get("/").text == "ok"


def test_session_expires_attribute(client_for: Client, clock: Clock) -> None:
    seen: list[Any] = []

    async def read(request: Request) -> PlainTextResponse:
        session = auth(request)
        seen.append(session.expires if session else None)
        return PlainTextResponse("ok")

    client = client_for(make_app(Route("/expires", read)))
    sign_in(client, "u")
    clock.now += 60
    client.get("/expires")
    assert seen[-1] is not None
    assert seen[-1].timestamp() == clock.now - 60 + 30 * 86400


def test_nested_user_claims_are_not_shared_between_requests(client_for: Client) -> None:
    async def meddle(request: Request) -> JSONResponse:
        session = auth(request)
        assert session is not None and session.user is not None
        groups = session.user.claims["groups"]
        groups.append("admin")
        return JSONResponse(session.user.claims["groups"])

    async def sign_in_with_groups(request: Request) -> PlainTextResponse:
        login(request, "u1", "USER", groups=["a"])
        return PlainTextResponse("ok")

    client = client_for(make_app(Route("/in", sign_in_with_groups), Route("/meddle", meddle)))
    client.get("/in")
    assert client.get("/meddle").json() == ["a"]
    assert client.get("/meddle").json() == ["a"]


def test_non_string_keys_become_strings_as_in_starlette(client_for: Client) -> None:
    async def int_key(request: Request) -> PlainTextResponse:
        request.session[1] = "one"
        return PlainTextResponse("ok")

    client = client_for(make_app(Route("/int", int_key)))
    assert client.get("/int").status_code == 200
    assert client.get("/me").json()["session"] == {"1": "one"}
