"""``asgi_jwt_session.testing``: a test client signed in in one line, for Starlette's
TestClient and httpx, with the app's own cookie name, keys, path and format."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from asgi_jwt_session import InvalidToken, JWTSessionMiddleware, SessionConfig, logout
from asgi_jwt_session.authjs import AuthJSFormat
from asgi_jwt_session.guards import require_role, requires_role
from asgi_jwt_session.session import auth
from asgi_jwt_session.testing import read_session, session_token, sign_in, sign_out
from tests.conftest import OLD_SECRET, OTHER_SECRET, SECRET

DOCS = Path(__file__).parent.parent / "docs"
JSON = {"accept": "application/json"}


async def admin(request: Request) -> JSONResponse:
    user = require_role(request, "ADMIN")
    return JSONResponse({"id": user.id, "claims": user.claims, "data": dict(request.session)})


async def me(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse({"id": None})
    return JSONResponse({"id": session.user.id, "role": session.user.role})


async def promote(request: Request) -> JSONResponse:
    request.session.set_role("ADMIN")
    return JSONResponse({})


async def sign_out_endpoint(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({})


@requires_role("ADMIN")
async def admin_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    session = auth(websocket)
    await websocket.send_json({"id": session.user.id if session and session.user else None})
    await websocket.close()


def make_app(**options: Any) -> Starlette:
    options.setdefault("secret_key", SECRET)
    return Starlette(
        routes=[Route("/admin", admin), Route("/me", me),
                Route("/promote", promote, methods=["POST"]),
                Route("/logout", sign_out_endpoint), WebSocketRoute("/ws", admin_socket)],
        middleware=[Middleware(JWTSessionMiddleware, **options)],
    )


def session_cookies(client: httpx.Client | httpx.AsyncClient) -> list[str]:
    return sorted(cookie.name for cookie in client.cookies.jar)


# --- Starlette's TestClient -------------------------------------------------------------


def test_admin_gets_in_a_user_does_not() -> None:
    client = TestClient(make_app())
    assert client.get("/admin", headers=JSON).status_code == 401

    session = sign_in(client, SECRET, user_id="ann", role="ADMIN")
    response = client.get("/admin", headers=JSON)
    assert response.status_code == 200
    assert response.json()["id"] == "ann"
    assert session.user is not None and session.user.id == "ann"
    assert session.expires_at is not None and session.jti

    sign_in(client, SECRET, user_id="bob", role="USER")
    assert client.get("/admin", headers=JSON).status_code == 403
    assert client.get("/me").json() == {"id": "bob", "role": "USER"}
    assert session_cookies(client) == ["session"]  # replaced, not added


def test_claims_and_data() -> None:
    client = TestClient(make_app())
    sign_in(client, SECRET, "ann", "ADMIN", data={"cart": [1, 2]}, name="Ann")
    body = client.get("/admin", headers=JSON).json()
    assert body["claims"] == {"name": "Ann"}
    assert body["data"] == {"cart": [1, 2]}


def test_custom_cookie_name_and_key_list() -> None:
    client = TestClient(make_app(secret_key=[SECRET, OLD_SECRET], session_cookie="sid"))
    sign_in(client, [SECRET, OLD_SECRET], "ann", "ADMIN", session_cookie="sid")
    assert session_cookies(client) == ["sid"]
    assert client.get("/admin", headers=JSON).status_code == 200

    # Signed with a key the app has rotated out but still reads: the app re-issues it.
    sign_in(client, OLD_SECRET, "ann", "ADMIN", session_cookie="sid")
    response = client.get("/admin", headers=JSON)
    assert response.status_code == 200
    assert response.headers["set-cookie"].startswith("sid=")
    assert read_session(client, SECRET, session_cookie="sid") is not None

    # Another app's key, or the default name: not this app's session.
    sign_in(client, OTHER_SECRET, "ann", "ADMIN", session_cookie="sid")
    assert client.get("/admin", headers=JSON).status_code == 401
    sign_out(client, "sid")
    sign_in(client, SECRET, "ann", "ADMIN")
    assert client.get("/admin", headers=JSON).status_code == 401


def test_config_path_domain_and_https() -> None:
    config = SessionConfig(session_cookie="app_session", path="/", domain="example.com",
                           https_only=True)
    client = TestClient(make_app(config=config), base_url="https://www.example.com")
    sign_in(client, SECRET, "ann", "ADMIN", config=config)
    [cookie] = list(client.cookies.jar)
    assert (cookie.name, cookie.domain, cookie.secure) == ("app_session", ".example.com", True)
    assert client.get("/admin", headers=JSON).status_code == 200

    # A client the app's cookie could never reach says so, rather than signing nobody in.
    with pytest.raises(ValueError, match=r"example\.com"):
        sign_in(TestClient(make_app(config=config)), SECRET, "ann", "ADMIN", config=config)


def test_the_app_signs_the_client_out() -> None:
    client = TestClient(make_app())
    sign_in(client, SECRET, "ann", "ADMIN")
    client.get("/logout")
    assert session_cookies(client) == []  # the app's expiry removed the helper's cookie
    assert client.get("/admin", headers=JSON).status_code == 401


def test_sign_out() -> None:
    client = TestClient(make_app())
    sign_in(client, SECRET, "ann", "ADMIN", big="x" * 6000)
    sign_out(client)
    assert session_cookies(client) == []
    assert client.get("/me").json() == {"id": None}


def test_a_large_session_is_chunked_as_the_middleware_chunks_it() -> None:
    client = TestClient(make_app())
    sign_in(client, SECRET, "ann", "ADMIN", big="x" * 6000)
    assert session_cookies(client) == ["session.0", "session.1", "session.2"]
    assert client.get("/admin", headers=JSON).status_code == 200
    sign_in(client, SECRET, "ann", "USER")  # smaller: the old chunks go
    assert session_cookies(client) == ["session"]
    assert client.get("/admin", headers=JSON).status_code == 403


def test_read_session_sees_what_the_app_wrote() -> None:
    client = TestClient(make_app())
    assert read_session(client, SECRET) is None
    sign_in(client, SECRET, "ann", "USER")
    client.post("/promote")
    session = read_session(client, SECRET)
    assert session is not None and session.user is not None
    assert session.user.role == "ADMIN"
    with pytest.raises(InvalidToken):
        read_session(client, OTHER_SECRET)


def test_websocket() -> None:
    client = TestClient(make_app())
    sign_in(client, SECRET, "ann", "ADMIN")
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"id": "ann"}


def test_session_token_for_a_raw_cookie_header() -> None:
    client = TestClient(make_app())
    token = session_token(SECRET, "ann", "ADMIN")
    assert client.get("/admin", headers={**JSON, "cookie": f"session={token}"}).status_code == 200
    token = session_token(SECRET, "bob", "USER")
    assert client.get("/admin", headers={**JSON, "cookie": f"session={token}"}).status_code == 403


def test_authjs_format() -> None:
    auth_secret = "authjs-secret-for-the-tests-0123456789"
    client = TestClient(make_app(secret_key=auth_secret, format=AuthJSFormat()))
    sign_in(client, auth_secret, "ann", "ADMIN", format=AuthJSFormat())
    assert session_cookies(client) == ["authjs.session-token"]
    assert client.get("/admin", headers=JSON).status_code == 200
    sign_in(client, auth_secret, "bob", "USER", format=AuthJSFormat())
    assert client.get("/admin", headers=JSON).status_code == 403


def test_login_rules_hold() -> None:
    client = TestClient(make_app())
    with pytest.raises(ValueError, match="reserved"):
        sign_in(client, SECRET, "ann", "ADMIN", exp=0)
    with pytest.raises(ValueError):
        sign_in(client, SECRET, "", "ADMIN")


# --- httpx ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_httpx_async_client() -> None:
    transport = httpx.ASGITransport(app=make_app(session_cookie="sid"))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        sign_in(client, SECRET, user_id="ann", role="ADMIN", session_cookie="sid")
        response = await client.get("/admin", headers=JSON)
        assert response.status_code == 200

        sign_in(client, SECRET, user_id="bob", role="USER", session_cookie="sid")
        assert (await client.get("/admin", headers=JSON)).status_code == 403

        await client.get("/logout")
        assert session_cookies(client) == []
        assert (await client.get("/admin", headers=JSON)).status_code == 401


# --- the docs -------------------------------------------------------------------------------


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), re.M | re.S)


@pytest.mark.parametrize("index", range(len(python_blocks(DOCS / "testing.md"))))
def test_docs_example_runs(index: int) -> None:
    code = python_blocks(DOCS / "testing.md")[index]
    exec(compile(code, f"docs/testing.md block {index + 1}", "exec"), {"__name__": "docs"})
