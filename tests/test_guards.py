"""Guards: every guard on every endpoint kind, for every kind of user."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint, WebSocketEndpoint
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import (
    AuthError,
    JWTSessionMiddleware,
    NotAuthenticated,
    PermissionDenied,
    Role,
    RoleHierarchy,
    SessionUser,
    auth,
    login,
    require_admin,
    require_role,
    requires_login,
    requires_role,
)
from asgi_jwt_session.guards import handle_auth_error, prefers_html

SECRET = "g" * 40
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
RANK = {role: index for index, role in enumerate(Role)}
Conn = HTTPConnection | Scope


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


async def do_login(request: Request) -> JSONResponse:
    login(request, request.query_params["user"], request.query_params["role"])
    return JSONResponse({})


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


def make_starlette_app(**options: Any) -> Starlette:
    routes: list[Any] = [Route("/login", do_login)]
    for guard in GUARDS:
        routes += starlette_routes(guard)
    return Starlette(routes=routes,
                     middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET, **options)])


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


@pytest.fixture
async def client_for() -> AsyncIterator[Callable[[ASGIApp], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def build(app: ASGIApp) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://testserver")
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


async def sign_in(client: httpx.AsyncClient, role: str | None) -> None:
    if role is not None:
        response = await client.get("/login", params={"user": f"u-{role}", "role": role})
        assert response.status_code < 300 and "set-cookie" in response.headers


# --- the matrix: guard x endpoint kind x user ---------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("role", USERS, ids=str)
@pytest.mark.parametrize("kind", APPS)
@pytest.mark.parametrize("guard", GUARDS, ids=lambda guard: guard.name)
async def test_http_guards(client_for: Callable[[ASGIApp], httpx.AsyncClient], guard: Guard,
                           kind: str, role: Role | None) -> None:
    client = client_for(APPS[kind])
    await sign_in(client, role)
    url = f"/{guard.name}/{kind}?page=2&q=a%20b"
    as_json = await client.get(url, headers={"accept": "application/json"})
    as_html = await client.get(url, headers={"accept": BROWSER})

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
def test_websocket_guards(anyio_backend: str, guard: Guard, kind: str,
                          role: Role | None) -> None:
    client = TestClient(WS_APPS[kind], backend=anyio_backend)
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
                pass  # pragma: no cover - closed before accept
        assert closed.value.code == (4401 if status == 401 else 4403)


def test_plain_calls_return_the_user() -> None:
    client = TestClient(STARLETTE_APP)
    client.get("/login", params={"user": "boss", "role": "ADMIN"})
    assert client.get("/require_admin/sync").json()["returned"] == "boss"
    assert client.get("/require_role/endpoint_async").json()["returned"] == "boss"
    fastapi = TestClient(FASTAPI_APP)
    fastapi.get("/login", params={"user": "boss", "role": "ADMIN"})
    assert fastapi.get("/require_role/fastapi_sync").json()["returned"] == "boss"


# --- roles ---------------------------------------------------------------------------


class Rank(StrEnum):
    MEMBER = "MEMBER"
    ADMIN = "ADMIN"
    OWNER = "OWNER"


def test_custom_hierarchy_from_the_middleware() -> None:
    async def admin_page(request: Request) -> PlainTextResponse:
        return PlainTextResponse(require_admin(request).role)

    @requires_role(Rank.ADMIN)
    async def admin_area(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @requires("role:ADMIN")
    async def starlette_admin(request: Request) -> PlainTextResponse:
        return PlainTextResponse(" ".join(request.auth.scopes))

    app = Starlette(
        routes=[Route("/login", do_login), Route("/admin", admin_page),
                Route("/area", admin_area), Route("/starlette", starlette_admin)],
        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET,
                               roles=RoleHierarchy(Rank))],
    )
    admin, owner = TestClient(app), TestClient(app)
    admin.get("/login", params={"user": "a", "role": "ADMIN"})
    owner.get("/login", params={"user": "o", "role": "OWNER"})
    # require_admin asks for the top of this hierarchy, OWNER.
    assert admin.get("/admin").status_code == 403
    assert owner.get("/admin").text == "OWNER"
    # A higher role satisfies a lower requirement.
    assert admin.get("/area").status_code == 200
    assert owner.get("/area").status_code == 200
    assert owner.get("/starlette").text == "authenticated role:MEMBER role:ADMIN role:OWNER"
    # The default roles mean nothing here: USER is not a role of this app.
    member = TestClient(app)
    member.get("/login", params={"user": "m", "role": "USER"})
    assert member.get("/area").status_code == 403


def test_unknown_required_role_is_an_error() -> None:
    @requires_role("ADMNI")
    async def typo(request: Request) -> PlainTextResponse:
        return PlainTextResponse("never")  # pragma: no cover

    app = Starlette(routes=[Route("/login", do_login), Route("/typo", typo)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    client = TestClient(app)
    client.get("/login", params={"user": "a", "role": "ADMIN"})
    with pytest.raises(ValueError, match="unknown role 'ADMNI'"):
        client.get("/typo")


def test_guards_need_roles() -> None:
    with pytest.raises(TypeError):
        requires_role()
    with pytest.raises(TypeError):
        require_role()
    with pytest.raises(TypeError, match="role names"):
        requires_role(do_login)  # type: ignore[arg-type]  # @requires_role without roles
    with pytest.raises(TypeError):
        require_role({"type": "http", "session": None})


# --- Starlette's request.user, request.auth and @requires -------------------------------


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


STARLETTE_AUTH_APP = Starlette(
    routes=[Route("/login", do_login), Route("/authenticated", starlette_authenticated),
            Route("/org_admin", starlette_org_admin), Route("/user", starlette_user),
            Route("/flag", user_flag), Route("/login_then_look", login_then_look),
            WebSocketRoute("/ws_admin", starlette_ws_admin)],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)],
)


@pytest.mark.parametrize(("role", "scopes"), [
    (Role.USER, ["authenticated", "role:USER"]),
    (Role.ORG_ADMIN, ["authenticated", "role:USER", "role:ORG_ADMIN"]),
    (Role.ADMIN, ["authenticated", "role:USER", "role:ORG_ADMIN", "role:ADMIN"]),
    ("GHOST", ["authenticated"]),  # a role the hierarchy does not know
])
def test_starlette_requires_sees_the_session(role: str, scopes: list[str]) -> None:
    client = TestClient(STARLETTE_AUTH_APP)
    client.get("/login", params={"user": "alice", "role": role})
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


def test_starlette_user_when_anonymous_and_after_login() -> None:
    client = TestClient(STARLETTE_AUTH_APP)
    assert client.get("/flag").json() == {"authenticated": False, "identity": ""}
    assert client.get("/authenticated").status_code == 403
    # request.user follows the session: a login in the same request shows at once.
    body = client.get("/login_then_look").json()
    assert body == {"before": False, "after": True,
                    "scopes": ["authenticated", "role:USER", "role:ORG_ADMIN", "role:ADMIN"]}


# --- how the exceptions become responses -------------------------------------------------


async def raise_custom(request: Request) -> Response:
    raise PermissionDenied("<b>owners</b> only")


async def stream_then_deny(request: Request) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        yield b"first chunk"
        raise PermissionDenied()

    return StreamingResponse(body())


async def ws_accept_then_deny(websocket: WebSocket) -> None:
    await websocket.accept()
    raise NotAuthenticated()


@requires_login
def sync_json(request: Request) -> JSONResponse:
    return JSONResponse({})


def routes_for_errors() -> list[Any]:
    return [Route("/login", do_login), Route("/custom", raise_custom),
            Route("/stream", stream_then_deny), Route("/sync", sync_json),
            WebSocketRoute("/ws_late", ws_accept_then_deny),
            WebSocketRoute("/ws", starlette_routes(GUARDS[0])[4].endpoint)]


@pytest.mark.anyio
async def test_raised_by_the_app_itself(
        client_for: Callable[[ASGIApp], httpx.AsyncClient]) -> None:
    client = client_for(Starlette(
        routes=routes_for_errors(),
        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)]))
    as_json = await client.get("/custom")
    assert as_json.status_code == 403
    assert as_json.json() == {"detail": "<b>owners</b> only"}
    as_html = await client.get("/custom", headers={"accept": "text/html"})
    assert as_html.status_code == 403
    assert "&lt;b&gt;owners&lt;/b&gt; only" in as_html.text


@pytest.mark.anyio
async def test_after_the_response_started_it_is_not_swallowed(
        client_for: Callable[[ASGIApp], httpx.AsyncClient]) -> None:
    client = client_for(Starlette(
        routes=routes_for_errors(),
        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)]))
    with pytest.raises(PermissionDenied):
        await client.get("/stream")


@pytest.mark.anyio
async def test_plain_asgi_after_start_is_not_swallowed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        require_role(scope, Role.USER)

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b"",
             "headers": [], "scheme": "http"}
    with pytest.raises(NotAuthenticated):
        await JWTSessionMiddleware(app, secret_key=SECRET)(scope, receive, send)
    assert [message["type"] for message in sent] == ["http.response.start"]


def test_websocket_after_accept_is_not_swallowed(anyio_backend: str) -> None:
    app = Starlette(routes=routes_for_errors(),
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    client = TestClient(app, backend=anyio_backend)
    with pytest.raises(NotAuthenticated), client.websocket_connect("/ws_late") as websocket:
        websocket.receive_text()


@pytest.mark.parametrize("wrap", ["starlette", "fastapi"])
def test_middleware_wrapping_the_app_from_outside(wrap: str) -> None:
    # JWTSessionMiddleware(app): the app's own error middleware is inside the session
    # middleware then, and would answer an AuthError with a 500.
    inner: Starlette
    if wrap == "starlette":
        inner = Starlette(routes=routes_for_errors())
    else:
        inner = FastAPI()
        inner.router.routes.extend(routes_for_errors())
    client = TestClient(JWTSessionMiddleware(inner, secret_key=SECRET))
    assert client.get("/sync").status_code == 401
    redirect = client.get("/sync", headers={"accept": BROWSER}, follow_redirects=False)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Fsync"
    assert client.get("/custom").status_code == 403
    with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
        with client.websocket_connect("/ws"):
            pass  # pragma: no cover
    assert closed.value.code == 4401


def test_bogus_cookie_is_expired_on_a_guard_response() -> None:
    client = TestClient(STARLETTE_APP)
    response = client.get("/requires_login/sync", headers={"cookie": "session=bogus"})
    assert response.status_code == 401
    assert "session=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()


def test_without_the_middleware() -> None:
    app = Starlette(routes=[Route("/sync", sync_json)])
    with pytest.raises(RuntimeError, match="JWTSessionMiddleware"):
        TestClient(app).get("/sync")


def test_login_url_option_and_mounts() -> None:
    app = Starlette(
        routes=[Mount("/shop", routes=[Route("/page", sync_json)])],
        middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET,
                               login_url="/auth/signin?from=guard")],
    )
    response = TestClient(app).get("/shop/page?x=1", headers={"accept": BROWSER},
                                   follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/signin?from=guard&next=%2Fshop%2Fpage%3Fx%3D1"


def test_mounted_sub_application_with_the_handler() -> None:
    # A mounted Starlette or FastAPI app answers errors itself (500) before they reach
    # the middleware, like any exception handler of the outer app: it needs the handler.
    inner = FastAPI(exception_handlers={AuthError: handle_auth_error})
    inner.router.routes.extend(routes_for_errors())
    app = Starlette(routes=[Mount("/sub", app=inner)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    client = TestClient(app)
    assert client.get("/sub/sync").status_code == 401
    redirect = client.get("/sub/sync", headers={"accept": BROWSER}, follow_redirects=False)
    assert redirect.headers["location"] == "/login?next=%2Fsub%2Fsync"
    with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
        with client.websocket_connect("/sub/ws"):
            pass  # pragma: no cover
    assert closed.value.code == 4401


# --- signatures and Accept -----------------------------------------------------------------


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


@pytest.mark.parametrize(("accept", "html"), [
    (BROWSER, True),
    ("text/html", True),
    ("text/*", True),
    ("application/json;q=0.5, text/html", True),
    ("*/*", False),
    ("", False),
    ("application/json", False),
    ("application/json, text/html", False),  # a tie is not a preference
    ("text/html;q=0.5, application/json", False),
    ("text/html;q=0, */*", False),
    ("text/html;q=oops, application/json;q=0.1", False),
])
def test_prefers_html(accept: str, html: bool) -> None:
    scope = {"headers": [(b"accept", accept.encode())]}
    assert prefers_html(scope) is html


def test_auth_errors() -> None:
    assert issubclass(NotAuthenticated, AuthError) and issubclass(PermissionDenied, AuthError)
    assert (NotAuthenticated().status_code, NotAuthenticated().close_code) == (401, 4401)
    assert (PermissionDenied().status_code, PermissionDenied().close_code) == (403, 4403)
    assert str(PermissionDenied("nope")) == "nope"


def test_scopes_of_a_hierarchy() -> None:
    roles = RoleHierarchy(Rank)
    assert roles.scopes(None) == []
    assert roles.scopes("ADMIN") == ["authenticated", "role:MEMBER", "role:ADMIN"]
    assert roles == RoleHierarchy(["MEMBER", "ADMIN", "OWNER"]) != RoleHierarchy()
