"""Guards: every guard on every endpoint kind, for every kind of user; decorators."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import Depends, FastAPI
from starlette.endpoints import HTTPEndpoint, WebSocketEndpoint
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import (
    JWTSessionMiddleware,
    Role,
    SessionUser,
    auth,
    login,
    require_admin,
    require_role,
    requires_login,
    requires_role,
)
from tests.conftest import SECRET, make_app

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
RANK = {role: index for index, role in enumerate(Role)}
Conn = HTTPConnection | Scope
Client = Callable[..., TestClient]


# --- the guards under test --------------------------------------------------------------


def unguarded(func: Any) -> Any:
    return func


def no_call(conn: Conn) -> None:
    return None


async def no_dependency() -> None:
    return None


@dataclass(frozen=True)
class Guard:
    name: str
    needs: Role | None  # the lowest role that passes; None: anyone signed in
    decorate: Callable[[Any], Any]  # decorator guards
    call: Callable[[Conn], SessionUser | None]  # plain-call guards
    dependency: Callable[..., Any]  # the same guard for FastAPI's Depends


GUARDS = [
    Guard("requires_login", None, requires_login, no_call, no_dependency),
    Guard("requires_role", Role.ORG_ADMIN, requires_role(Role.ORG_ADMIN), no_call,
          no_dependency),
    Guard("require_role", Role.ORG_ADMIN, unguarded,
          lambda conn: require_role(conn, Role.ORG_ADMIN), require_role(Role.ORG_ADMIN)),
    Guard("require_admin", Role.ADMIN, unguarded, require_admin, require_admin()),
]
USERS = [None, Role.USER, Role.ORG_ADMIN, Role.ADMIN]


def expected_status(guard: Guard, role: Role | None) -> int:
    if role is None:
        return 401
    if guard.needs is None or RANK[role] >= RANK[guard.needs]:
        return 200
    return 403


def who(conn: Conn, returned: SessionUser | None) -> dict[str, Any]:
    """What a guarded endpoint answers: the session's user, and what the guard returned."""
    session = auth(conn)
    assert session is not None and session.user is not None
    return {"user": session.user.id, "role": session.user.role,
            "returned": returned.id if returned is not None else None}


# --- Starlette: function endpoints, HTTPEndpoint, websocket endpoints -------------------


def starlette_routes(guard: Guard) -> list[Route | WebSocketRoute]:
    decorate, call = guard.decorate, guard.call

    @decorate
    async def async_endpoint(request: Request) -> JSONResponse:
        return JSONResponse(who(request, call(request)))

    @decorate
    def sync_endpoint(request: Request) -> JSONResponse:
        return JSONResponse(who(request, call(request)))

    class AsyncEndpoint(HTTPEndpoint):
        @decorate
        async def get(self, request: Request) -> JSONResponse:
            return JSONResponse(who(request, call(request)))

    class SyncEndpoint(HTTPEndpoint):
        @decorate
        def get(self, request: Request) -> JSONResponse:
            return JSONResponse(who(request, call(request)))

    @decorate
    async def ws_endpoint(websocket: WebSocket) -> None:
        returned = call(websocket)
        await websocket.accept()
        await websocket.send_json(who(websocket, returned))
        await websocket.close()

    class WSEndpoint(WebSocketEndpoint):
        @decorate
        async def on_connect(self, websocket: WebSocket) -> None:
            returned = call(websocket)
            await websocket.accept()
            await websocket.send_json(who(websocket, returned))

    prefix = f"/{guard.name}"
    return [
        Route(f"{prefix}/async", async_endpoint),
        Route(f"{prefix}/sync", sync_endpoint),
        Route(f"{prefix}/endpoint_async", AsyncEndpoint),
        Route(f"{prefix}/endpoint_sync", SyncEndpoint),
        WebSocketRoute(f"{prefix}/ws", ws_endpoint),
        WebSocketRoute(f"{prefix}/ws_endpoint", WSEndpoint),
    ]



def make_starlette_app() -> ASGIApp:
    routes: list[Any] = []
    for guard in GUARDS:
        routes += starlette_routes(guard)
    return make_app(*routes)


# --- FastAPI: decorated routes and dependencies -----------------------------------------


def make_fastapi_app() -> FastAPI:
    api = FastAPI()

    @api.get("/login")
    async def fastapi_login(request: Request, user: str, role: str) -> dict[str, Any]:
        login(request, user, role)
        return {}

    for guard in GUARDS:
        add_fastapi_routes(api, guard)
    api.add_middleware(JWTSessionMiddleware, secret_key=SECRET)
    return api


def add_fastapi_routes(api: FastAPI, guard: Guard) -> None:
    decorate, dependency = guard.decorate, guard.dependency
    prefix = f"/{guard.name}"

    @api.get(f"{prefix}/fastapi_async")
    @decorate
    async def async_route(request: Request, user: Any = Depends(dependency)) -> dict[str, Any]:  # noqa: B008
        return who(request, user)

    @api.get(f"{prefix}/fastapi_sync")
    @decorate
    def sync_route(request: Request, user: Any = Depends(dependency)) -> dict[str, Any]:  # noqa: B008
        return who(request, user)

    @api.websocket(f"{prefix}/fastapi_ws")
    @decorate
    async def ws_route(websocket: WebSocket, user: Any = Depends(dependency)) -> None:  # noqa: B008
        await websocket.accept()
        await websocket.send_json(who(websocket, user))
        await websocket.close()


# --- a plain ASGI app: no Starlette routing ---------------------------------------------


def asgi_endpoint(guard: Guard) -> ASGIApp:
    @guard.decorate
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        body = who(scope, guard.call(scope))
        if scope["type"] == "websocket":
            assert (await receive())["type"] == "websocket.connect"
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": json.dumps(body)})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    return app


def make_asgi_app() -> ASGIApp:
    endpoints = {guard.name: asgi_endpoint(guard) for guard in GUARDS}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/login":
            query = parse_qs(scope["query_string"].decode())
            login(scope, query["user"][0], query["role"][0])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        name = scope["path"].split("/")[1]
        await endpoints[name](scope, receive, send)

    return JWTSessionMiddleware(app, secret_key=SECRET)


STARLETTE_APP = make_starlette_app()
FASTAPI_APP = make_fastapi_app()
ASGI_APP = make_asgi_app()
APPS: dict[str, ASGIApp] = {
    "async": STARLETTE_APP, "sync": STARLETTE_APP,
    "endpoint_async": STARLETTE_APP, "endpoint_sync": STARLETTE_APP,
    "fastapi_async": FASTAPI_APP, "fastapi_sync": FASTAPI_APP, "asgi": ASGI_APP,
}
WS_APPS: dict[str, ASGIApp] = {
    "ws": STARLETTE_APP, "ws_endpoint": STARLETTE_APP, "fastapi_ws": FASTAPI_APP,
    "asgi_ws": ASGI_APP,
}



# --- the matrix: guard x endpoint kind x user ---------------------------------------------


@pytest.mark.parametrize("role", USERS, ids=str)
@pytest.mark.parametrize("kind", APPS)
@pytest.mark.parametrize("guard", GUARDS, ids=lambda guard: guard.name)
def test_http_guards(client_for: Client, guard: Guard, kind: str, role: Role | None) -> None:
    client = client_for(APPS[kind])
    if role is not None:
        response = client.get("/login", params={"user": f"u-{role}", "role": role})
        assert response.status_code < 300 and "set-cookie" in response.headers
    url = f"/{guard.name}/{kind}?page=2&q=a%20b"
    as_json = client.get(url, headers={"accept": "application/json"})
    as_html = client.get(url, headers={"accept": BROWSER})

    status = expected_status(guard, role)
    if status == 200:
        returned = None if guard.call is no_call else f"u-{role}"
        body = {"user": f"u-{role}", "role": role, "returned": returned}
        assert as_json.status_code == as_html.status_code == 200
        assert as_json.json() == as_html.json() == body
        assert "cookie" in as_json.headers["vary"].lower()
    elif status == 401:
        assert as_json.status_code == 401
        assert as_json.json() == {"detail": "Not authenticated"}
        assert as_html.status_code == 303
        expected_next = f"/{guard.name}/{kind}?page=2&q=a%20b"
        location = urlsplit(as_html.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query) == {"next": [expected_next]}
    else:
        assert as_json.status_code == 403
        assert as_json.json() == {"detail": "Permission denied"}
        assert as_html.status_code == 403
        assert as_html.headers["content-type"].startswith("text/html")
        assert "403 Forbidden" in as_html.text
    if status != 200:
        assert "accept" in as_json.headers["vary"].lower()
        assert "cookie" in as_json.headers["vary"].lower()


@pytest.mark.parametrize("role", USERS, ids=str)
@pytest.mark.parametrize("kind", WS_APPS)
@pytest.mark.parametrize("guard", GUARDS, ids=lambda guard: guard.name)
def test_websocket_guards(client_for: Client, guard: Guard, kind: str,
                          role: Role | None) -> None:
    client = client_for(WS_APPS[kind])
    if role is not None:
        client.get("/login", params={"user": f"u-{role}", "role": role})
    path = f"/{guard.name}/{kind}"
    status = expected_status(guard, role)
    if status == 200:
        with client.websocket_connect(path) as websocket:
            body = websocket.receive_json()
        assert body["user"] == f"u-{role}"
        assert body["returned"] in (None, f"u-{role}")
    else:
        with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
            with client.websocket_connect(path):
                pass  # pragma: no cover - refused before accept
        assert closed.value.status_code == status  # the server's denial response


def test_plain_calls_return_the_user(client_for: Client) -> None:
    client = client_for(STARLETTE_APP)
    client.get("/login", params={"user": "boss", "role": "ADMIN"})
    assert client.get("/require_admin/sync").json()["returned"] == "boss"
    assert client.get("/require_role/endpoint_async").json()["returned"] == "boss"
    fastapi = client_for(FASTAPI_APP)
    fastapi.get("/login", params={"user": "boss", "role": "ADMIN"})
    assert fastapi.get("/require_role/fastapi_sync").json()["returned"] == "boss"


# --- signatures -----------------------------------------------------------------------------


def test_guards_need_roles() -> None:
    with pytest.raises(TypeError):
        requires_role()
    with pytest.raises(TypeError):
        require_role()
    with pytest.raises(TypeError, match="role names"):
        requires_role(make_app)  # type: ignore[arg-type]  # @requires_role without roles
    with pytest.raises(TypeError):
        require_role({"type": "http", "session": None})


def test_decorators_keep_the_endpoint() -> None:
    async def endpoint(request: Request, item_id: int, *, q: str = "") -> JSONResponse:
        """Docs."""
        return JSONResponse({})  # pragma: no cover

    def sync_endpoint(request: Request) -> JSONResponse:
        return JSONResponse({})  # pragma: no cover

    for guarded in (requires_login(endpoint), requires_role(Role.ADMIN)(endpoint)):
        assert inspect.signature(guarded) == inspect.signature(endpoint)
        assert guarded.__name__ == "endpoint" and guarded.__doc__ == "Docs."
        assert inspect.iscoroutinefunction(guarded)
    assert not inspect.iscoroutinefunction(requires_login(sync_endpoint))


def test_guarded_function_without_a_connection() -> None:
    @requires_login
    def lonely(x: int) -> int:
        return x  # pragma: no cover

    with pytest.raises(TypeError, match="Request, WebSocket or ASGI scope"):
        lonely(1)
