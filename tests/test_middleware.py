"""JWTSessionMiddleware as a drop-in for Starlette's SessionMiddleware, and its additions:
renewal, key rotation, Vary, websockets, plain ASGI apps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, Keyring, auth
from tests.conftest import OLD_SECRET, SECRET, Clock, cookie_value, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]


# --- behaviours of Starlette's own SessionMiddleware tests -------------------------------


def test_session(client_for: Client) -> None:
    client = client_for()
    assert client.get("/me").json()["session"] == {}

    response = client.post("/session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    line = set_cookies(response)[0]
    assert "HttpOnly" in line and "SameSite=Lax" in line and "Max-Age=2592000" in line
    assert "Secure" not in line  # http request, https_only=None

    assert client.get("/me").json()["session"] == {"some": "data"}

    response = client.post("/clear")
    assert response.json() == {"session": {}}
    assert client.get("/me").json()["session"] == {}


def test_untouched_empty_session_sets_no_cookie(client_for: Client) -> None:
    client = client_for()
    response = client.get("/me")
    assert set_cookies(response) == []
    assert "cookie" in response.headers["vary"].lower()  # accessed
    response = client.get("/plain")
    assert set_cookies(response) == []
    assert "vary" not in response.headers  # never accessed


def test_reading_a_session_does_not_reissue_it(client_for: Client) -> None:
    client = client_for()
    client.post("/session", json={"a": 1})
    for _ in range(3):
        assert set_cookies(client.get("/me")) == []


def test_session_expires(client_for: Client, clock: Clock) -> None:
    client = client_for(max_age=1, leeway=0)
    response = client.post("/session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    # Replay the cookie after it expired: an expired token reads as empty.
    cookie = set_cookies(response)[0].split(";")[0]
    clock.now += 2
    response = client_for(client.app).get("/me", headers={"cookie": cookie})
    assert response.json()["session"] == {}
    assert "Max-Age=0" in set_cookies(response)[0]


def test_invalid_session_cookie(client_for: Client) -> None:
    client = client_for()
    response = client.post("/session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    client.cookies.set("session", "invalid")
    response = client.get("/me")
    assert response.status_code == 200
    assert response.json()["session"] == {}
    assert "Max-Age=0" in set_cookies(response)[0]


def test_websocket_reads_the_session(client_for: Client) -> None:
    client = client_for()
    sign_in(client, "u1")
    client.post("/session", json={"k": "v"})
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"session": {"k": "v"}, "user": "u1"}


# --- renewal ----------------------------------------------------------------------------


def test_renewed_after_update_age_only(client_for: Client, clock: Clock) -> None:
    client = client_for(update_age=60)
    sign_in(client, "u")
    clock.now += 59
    assert set_cookies(client.get("/me")) == []
    clock.now += 1
    renewed = set_cookies(client.get("/me"))
    assert len(renewed) == 1 and "Max-Age=2592000" in renewed[0]
    assert set_cookies(client.get("/me")) == []
    assert client.get("/me").json()["id"] == "u"


def test_absolute_lifetime_caps_sliding(client_for: Client, clock: Clock) -> None:
    client = client_for(update_age=0, max_lifetime=2, leeway=0)
    sign_in(client, "u")
    line = set_cookies(client.get("/me"))[0]
    assert client.get("/me").json()["id"] == "u"
    token = line.split(";")[0].split("=", 1)[1]
    clock.now += 3
    fresh = client_for(client.app)
    fresh.cookies.set("session", token)
    response = fresh.get("/me")
    assert response.json()["id"] is None
    assert "Max-Age=0" in set_cookies(response)[0]


def test_a_renewal_varies_on_cookie_even_if_the_app_never_read_the_session(
        client_for: Client, clock: Clock) -> None:
    client = client_for()
    sign_in(client, "u1")
    clock.now += 2 * 86400
    response = client.get("/plain")
    assert len(set_cookies(response)) == 1
    assert response.headers["vary"] == "Cookie"


def test_renewal_comes_before_a_short_max_age_runs_out(client_for: Client,
                                                       clock: Clock) -> None:
    client = client_for(max_age=3600)  # update_age (a day) is longer than the token lives
    sign_in(client, "u1")
    start = clock.now
    clock.now = start + 1700
    assert set_cookies(client.get("/me")) == []
    clock.now = start + 1900
    assert len(set_cookies(client.get("/me"))) == 1
    clock.now = start + 3000  # past the first token's life
    assert client.get("/me").json()["id"] == "u1"


def test_rotation_reissues_with_the_newest_key(client_for: Client) -> None:
    old_client = client_for(secret_key=OLD_SECRET)
    sign_in(old_client, "u")
    token = old_client.cookies["session"]

    rotated = client_for(secret_key=[SECRET, OLD_SECRET])
    rotated.cookies.set("session", token)
    response = rotated.get("/me")
    assert response.json()["id"] == "u"
    reissued = set_cookies(response)
    assert len(reissued) == 1
    new_token = cookie_value(reissued)
    assert new_token != token
    assert set_cookies(rotated.get("/me")) == []

    # The new token is readable by an app that only knows the new key.
    only_new = client_for(secret_key=Keyring(SECRET))
    only_new.cookies.set("session", new_token)
    assert only_new.get("/me").json()["id"] == "u"
    # And the old token is not.
    response = client_for(only_new.app).get("/me", headers={"cookie": f"session={token}"})
    assert response.json()["id"] is None


# --- Vary, plain ASGI apps, lifespan ----------------------------------------------------


def test_auth_marks_the_response_as_cookie_dependent(client_for: Client) -> None:
    async def who(request: Request) -> PlainTextResponse:
        session = auth(request)
        return PlainTextResponse(session.user.id if session and session.user else "-")

    async def vary_star(request: Request) -> PlainTextResponse:
        auth(request)
        return PlainTextResponse("*", headers={"vary": "Accept-Encoding"})

    client = client_for(make_app(Route("/who", who), Route("/vary", vary_star)))
    assert client.get("/who").headers["vary"] == "Cookie"
    sign_in(client, "u")
    response = client.get("/who")
    assert response.text == "u" and response.headers["vary"] == "Cookie"
    assert client.get("/vary").headers["vary"] == "Accept-Encoding, Cookie"


def test_plain_asgi_app(client_for: Client) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        session["hits"] = session.get("hits", 0) + 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(session["hits"]).encode()})

    client = client_for(JWTSessionMiddleware(app, secret_key=SECRET))
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"


@pytest.mark.anyio
async def test_lifespan_passes_through() -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        events.append(scope["type"])
        assert "session" not in scope

    await JWTSessionMiddleware(app, secret_key=SECRET)({"type": "lifespan"}, None, None)
    assert events == ["lifespan"]


def test_the_context_is_in_the_scope(client_for: Client) -> None:
    async def context(request: Request) -> PlainTextResponse:
        from asgi_jwt_session.context import SessionContext, get_context

        found = get_context(request)
        assert isinstance(found, SessionContext) and found is request.scope["session_context"]
        assert "session_middleware" not in request.scope
        assert found.login_url == "/signin" and found.writable
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", context)])
    assert client_for(JWTSessionMiddleware(app, SECRET, login_url="/signin")).get("/").text == "ok"


def test_config_and_keyword_options_do_not_mix() -> None:
    from asgi_jwt_session import SessionConfig

    with pytest.raises(TypeError, match="config"):
        JWTSessionMiddleware(Starlette(), SECRET, config=SessionConfig(), update_age=5)
