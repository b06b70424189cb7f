"""Fresh login, "sudo mode" (issue 13, item 3): ``requires_fresh_login(max_age=300)``
as decorator, plain call and FastAPI dependency; a browser is sent to sign in again
(``reauth=1``), other clients get 401 with a reason; ``reauthenticate(request)``
after the app checked the password again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import (
    JWTSessionMiddleware,
    NotAuthenticated,
    ReauthenticationRequired,
    SessionUser,
    login,
    reauthenticate,
    require_fresh_login,
    requires_fresh_login,
)
from asgi_jwt_session.codec import check_types
from asgi_jwt_session.errors import InvalidToken
from asgi_jwt_session.responses import exception_handlers
from asgi_jwt_session.session import Session
from asgi_jwt_session.tokens import TokenCodec
from tests.conftest import SECRET, Clock, cookie_value, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@requires_fresh_login()
async def delete_account(request: Request) -> JSONResponse:
    return JSONResponse({"deleted": True})


@requires_fresh_login(max_age=60)
def change_email(request: Request) -> JSONResponse:  # a sync endpoint
    return JSONResponse({"changed": True})


async def called_guard(request: Request) -> JSONResponse:
    user = require_fresh_login(request, max_age=120)
    return JSONResponse({"id": user.id})


class Settings(HTTPEndpoint):
    @requires_fresh_login()
    async def post(self, request: Request) -> JSONResponse:
        return JSONResponse({"saved": True})


@requires_fresh_login()
async def sensitive_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"ok": True})
    await websocket.close()


async def confirm_password(request: Request) -> JSONResponse:
    """The app checked the password again (here: any body says it did)."""
    reauthenticate(request)
    return JSONResponse({})


ROUTES = [
    Route("/delete", delete_account, methods=["GET", "POST"]),
    Route("/email", change_email),
    Route("/called", called_guard),
    Route("/settings", Settings),
    Route("/confirm", confirm_password, methods=["POST"]),
    WebSocketRoute("/sensitive-ws", sensitive_socket),
]


def app() -> Starlette:
    return make_app(*ROUTES)


def claims_of(response: httpx.Response, now: float) -> dict[str, Any]:
    return TokenCodec(SECRET).decode(cookie_value(set_cookies(response, "session")),
                                     now=int(now))


# --- the guard's answers -----------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [("POST", "/delete"), ("GET", "/email"),
                                          ("GET", "/called"), ("POST", "/settings")])
def test_fresh_after_sign_in_then_stale(client_for: Client, clock: Clock, method: str,
                                        path: str) -> None:
    client = client_for(app())
    sign_in(client)
    assert client.request(method, path).status_code == 200
    clock.now += 400  # past every max_age here
    response = client.request(method, path)
    assert response.status_code == 401
    assert response.json() == {"detail": "Re-authentication required",
                               "reason": "reauthentication_required"}


def test_max_age_is_the_guards(client_for: Client, clock: Clock) -> None:
    client = client_for(app())
    sign_in(client)
    clock.now += 60
    assert client.get("/email").status_code == 200  # max_age=60: exactly 60 s is fresh
    assert client.post("/delete").status_code == 200
    clock.now += 1
    assert client.get("/email").status_code == 401
    assert client.get("/called").status_code == 200  # max_age=120
    assert client.post("/delete").status_code == 200  # the default, 300


def test_a_browser_is_sent_to_sign_in_again(client_for: Client, clock: Clock) -> None:
    client = client_for(app())
    sign_in(client)
    clock.now += 301
    response = client.get("/delete?confirm=1", headers={"accept": BROWSER})
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query) == {"next": ["/delete?confirm=1"], "reauth": ["1"]}


def test_nobody_signed_in_is_the_plain_answer(client_for: Client) -> None:
    client = client_for(app())
    response = client.post("/delete")
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    response = client.get("/delete", headers={"accept": BROWSER})
    assert parse_qs(urlsplit(response.headers["location"]).query) == {"next": ["/delete"]}


def test_a_websocket_is_refused_with_401(client_for: Client, clock: Clock) -> None:
    client = client_for(app())
    sign_in(client)
    with client.websocket_connect("/sensitive-ws") as websocket:
        assert websocket.receive_json() == {"ok": True}
    clock.now += 301
    with pytest.raises(WebSocketDisconnect) as closed, \
            client.websocket_connect("/sensitive-ws"):
        pass
    assert closed.value.status_code == 401  # the server's denial response


def test_answered_by_the_exception_handlers_too(client_for: Client, clock: Clock) -> None:
    # The middleware wrapping a whole Starlette app from outside.
    inner = Starlette(routes=make_app(*ROUTES).routes, exception_handlers=exception_handlers)
    client = client_for(JWTSessionMiddleware(inner, secret_key=SECRET))
    sign_in(client)
    clock.now += 301
    response = client.post("/delete")
    assert response.status_code == 401
    assert response.json()["reason"] == "reauthentication_required"


# --- reauthenticate ------------------------------------------------------------------------------


def test_reauthenticate_makes_the_session_fresh_again(client_for: Client,
                                                      clock: Clock) -> None:
    client = client_for(app())
    signed_in = int(clock.now)
    sign_in(client)
    clock.now += 3600
    assert client.post("/delete").status_code == 401
    response = client.post("/confirm")
    claims = claims_of(response, clock.now)
    assert claims["rat"] == int(clock.now)
    assert claims["auth_time"] == signed_in  # the absolute lifetime is not extended
    assert client.post("/delete").status_code == 200
    clock.now += 301
    assert client.post("/delete").status_code == 401


def test_rat_is_left_out_until_it_differs_from_the_sign_in(client_for: Client,
                                                           clock: Clock) -> None:
    client = client_for(make_app(*ROUTES, update_age=60))
    response = sign_in(client)
    assert "rat" not in claims_of(response, clock.now)  # the sign-in is the proof
    clock.now += 30
    client.post("/confirm")
    clock.now += 60
    response = client.get("/me")  # renewed: the re-authentication time is kept
    claims = claims_of(response, clock.now)
    assert claims["rat"] == int(clock.now) - 60
    assert claims["iat"] == int(clock.now)


def test_reauthenticate_needs_a_signed_in_user() -> None:
    with pytest.raises(NotAuthenticated):
        Session().reauthenticate()
    session = Session()
    session.login("alice", "USER")
    session.reauthenticate()
    assert session.authenticated_at is not None and session.modified


def test_reauthenticate_after_the_session_ended_asks_to_sign_in(client_for: Client,
                                                                 clock: Clock) -> None:
    # The user idled past the session's end on the confirm-password page, then submitted.
    client = client_for(app())
    html = {"accept": "text/html"}
    response = client.post("/confirm", headers=html, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
    response = client.post("/confirm")
    assert response.status_code == 401
    assert response.json()["detail"] == "Not authenticated"


def test_a_token_without_auth_time_is_never_fresh(client_for: Client, clock: Clock) -> None:
    # Auth.js tokens may carry no auth_time: nothing says when the user proved anything.
    now = int(clock.now)
    token = TokenCodec(SECRET).encode({"sub": "alice", "role": "USER", "iat": now,
                                       "exp": now + 600})
    client = client_for(app())
    response = client.post("/delete", headers={"cookie": f"session={token}"})
    assert response.status_code == 401
    assert response.json()["reason"] == "reauthentication_required"


# --- FastAPI ------------------------------------------------------------------------------------


def test_fastapi_dependency(client_for: Client, clock: Clock) -> None:
    api = FastAPI()

    @api.get("/login")
    async def fastapi_login(request: Request) -> dict[str, Any]:
        login(request, "alice", "ADMIN")
        return {}

    fresh = require_fresh_login(max_age=30)

    @api.post("/transfer")
    async def transfer(user: SessionUser = Depends(fresh)) -> dict[str, Any]:  # noqa: B008
        return {"id": user.id}

    @api.post("/decorated")
    @requires_fresh_login(max_age=30)
    async def decorated(request: Request) -> dict[str, Any]:
        return {"ok": True}

    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)
    client = client_for(api)
    assert client.get("/login").status_code == 200
    assert client.post("/transfer").json() == {"id": "alice"}
    assert client.post("/decorated").json() == {"ok": True}
    clock.now += 31
    for path in ("/transfer", "/decorated"):
        response = client.post(path)
        assert response.status_code == 401
        assert response.json()["reason"] == "reauthentication_required"


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_age", [-1, 1.5, True, "300", None])
def test_max_age_must_be_whole_seconds(max_age: Any) -> None:
    with pytest.raises(ValueError, match="max_age"):
        requires_fresh_login(max_age=max_age)
    with pytest.raises(ValueError, match="max_age"):
        require_fresh_login(max_age=max_age)


def test_the_decorator_needs_its_parentheses() -> None:
    with pytest.raises(TypeError, match=r"requires_fresh_login\(\)"):
        requires_fresh_login(delete_account)  # type: ignore[arg-type]


def test_the_error_is_a_not_authenticated() -> None:
    error = ReauthenticationRequired()
    assert isinstance(error, NotAuthenticated)
    assert (error.status_code, error.close_code, error.reason) == (
        401, 4401, "reauthentication_required")


@pytest.mark.parametrize("rat", ["1", 1.5, True, -1, 10**12, None])
def test_a_bad_rat_claim_is_refused(rat: Any) -> None:
    with pytest.raises(InvalidToken, match="'rat'"):
        check_types({"exp": 1, "rat": rat})
