"""Starlette's ``request.user``, ``request.auth`` and ``@requires`` over the session."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import Role, login
from tests.conftest import make_app, sign_in

Client = Callable[..., TestClient]


@requires("authenticated")
async def starlette_authenticated(request: Request) -> JSONResponse:
    return JSONResponse({"scopes": request.auth.scopes, "name": request.user.display_name})


@requires("role:ORG_ADMIN")
async def starlette_org_admin(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@requires("role:USER")
async def starlette_user(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@requires("role:ADMIN")
async def starlette_ws_admin(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.user.display_name)
    await websocket.close()


async def user_flag(request: Request) -> JSONResponse:
    return JSONResponse({"authenticated": request.user.is_authenticated,
                         "identity": request.user.identity})


async def login_then_look(request: Request) -> JSONResponse:
    before = request.user.is_authenticated
    login(request, "late", "ADMIN")
    return JSONResponse({"before": before, "after": request.user.is_authenticated,
                         "scopes": request.auth.scopes})


APP = make_app(Route("/authenticated", starlette_authenticated),
               Route("/org_admin", starlette_org_admin), Route("/user", starlette_user),
               Route("/flag", user_flag), Route("/login_then_look", login_then_look),
               WebSocketRoute("/ws_admin", starlette_ws_admin))


@pytest.mark.parametrize(("role", "scopes"), [
    (Role.USER, ["authenticated", "role:USER"]),
    (Role.ORG_ADMIN, ["authenticated", "role:USER", "role:ORG_ADMIN"]),
    (Role.ADMIN, ["authenticated", "role:USER", "role:ORG_ADMIN", "role:ADMIN"]),
    ("GHOST", ["authenticated"]),  # a role the hierarchy does not know
])
def test_starlette_requires_sees_the_session(client_for: Client, role: str,
                                            scopes: list[str]) -> None:
    client = client_for(APP)
    sign_in(client, "alice", role)
    assert client.get("/authenticated").json() == {"scopes": scopes, "name": "alice"}
    assert client.get("/flag").json() == {"authenticated": True, "identity": "alice"}
    assert client.get("/user").status_code == (200 if "role:USER" in scopes else 403)
    assert client.get("/org_admin").status_code == (200 if "role:ORG_ADMIN" in scopes else 403)
    if "role:ADMIN" in scopes:
        with client.websocket_connect("/ws_admin") as websocket:
            assert websocket.receive_text() == "alice"
    else:
        with pytest.raises(WebSocketDisconnect):  # noqa: SIM117
            with client.websocket_connect("/ws_admin"):
                pass  # pragma: no cover


def test_starlette_user_when_anonymous_and_after_login(client_for: Client) -> None:
    client = client_for(APP)
    assert client.get("/flag").json() == {"authenticated": False, "identity": ""}
    assert client.get("/authenticated").status_code == 403
    # request.user follows the session: a login in the same request shows at once.
    body = client.get("/login_then_look").json()
    assert body == {"before": False, "after": True,
                    "scopes": ["authenticated", "role:USER", "role:ORG_ADMIN", "role:ADMIN"]}
