"""The answers: ``safe_next`` and the ``next`` the guards emit (open-redirect probes),
content negotiation, and how guard errors become 401/403/redirects/closes wherever they
are raised."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from asgi_jwt_session import (
    AuthError,
    JWTSessionMiddleware,
    NotAuthenticated,
    PermissionDenied,
    Role,
    require_role,
    requires_login,
)
from asgi_jwt_session.responses import exception_handlers, prefers_html, safe_next
from tests.asgi import asgi_get
from tests.conftest import SECRET, make_app

BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
Client = Callable[..., TestClient]


# --- safe_next ---------------------------------------------------------------------------


SAFE = [
    "/",
    "/orders/42",
    "/orders/42?page=2&sort=desc",
    "/a/b#section",
    "/search?next=//evil.example",  # another site in the query is only data
    "/caf%C3%A9",
    "/café",
    "/a//b",
    "/%2F%2Fevil.example",  # an encoded slash stays in the path
    "/%5Cevil.example",
    "/.well-known/security.txt",
    "/a:b",
]

UNSAFE = [
    "",
    "evil.example",
    "//evil.example",
    "///evil.example",
    "//evil.example/path?x=1",
    "https://evil.example",
    "HTTPS://evil.example",
    "http:/evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/\\evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/a\\b",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    " /a",
    "/a b",
    "/x\x00",
    "/x\x7f",
    "/x\x85",
    "/\u2028/evil.example",
    "/\u202e/elpmaxe.live",
    "/..//evil.example",
    "/../evil",
    "/./",
    "/a/..//evil.example",
    "/%2e%2e//evil.example",
    "/%2E%2E//evil.example",
    "/.%2e//evil.example",
    "/%2e/",
]


@pytest.mark.parametrize("value", SAFE)
def test_safe_next_keeps_paths_on_this_site(value: str) -> None:
    assert safe_next(value) == value


@pytest.mark.parametrize("value", UNSAFE)
def test_safe_next_refuses_everything_else(value: str) -> None:
    assert safe_next(value) == "/"
    assert safe_next(value, default="/home") == "/home"


@pytest.mark.parametrize("value", [None, 42, b"/bytes", ["/list"]])
def test_safe_next_refuses_non_strings(value: Any) -> None:
    assert safe_next(value) == "/"


# --- what the guards emit ------------------------------------------------------------------


async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
    require_role(scope, Role.USER)
    raise AssertionError("nobody is signed in")  # pragma: no cover


GUARDED = JWTSessionMiddleware(guarded, secret_key=SECRET)


async def redirect_for(path: str, query: bytes = b"") -> str:
    """Send a request for ``path`` (as the server decoded it) to a guarded plain ASGI
    app, and return the ``Location`` of the login redirect."""
    response = await asgi_get(GUARDED, path, [(b"accept", BROWSER.encode())],
                              query_string=query)
    assert response.status == 303
    locations = response.header("location")
    assert len(locations) == 1
    location = locations[0]
    assert "\r" not in location and "\n" not in location
    return location


def emitted_next(location: str) -> str:
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("", "", "/login")
    values = parse_qs(parts.query)
    assert list(values) == ["next"]
    (value,) = values["next"]
    return value


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "query", "expected"), [
    ("/orders/42", b"", "/orders/42"),
    ("/orders/42", b"page=2&sort=desc", "/orders/42?page=2&sort=desc"),
    ("/search", b"next=//evil.example", "/search?next=//evil.example"),
    ("/café au lait", b"q=%C3%A9", "/caf%C3%A9%20au%20lait?q=%C3%A9"),
    ("/raw", "q=é".encode(), "/raw?q=%C3%A9"),
    ("/a", b"x=1\r\nSet-Cookie: evil=1", "/a?x=1%0D%0ASet-Cookie:%20evil=1"),
    ("/\\evil.example", b"", "/%5Cevil.example"),
    ("/\t/evil.example", b"", "/%09/evil.example"),
    ("/a\r\nLocation: https://evil.example", b"",
     "/a%0D%0ALocation:%20https://evil.example"),
    ("//evil.example", b"", "/"),
    ("//evil.example/x", b"a=1", "/"),
    ("///evil.example", b"", "/"),
    ("/..//evil.example", b"", "/"),
    ("/a/..//evil.example", b"", "/"),
])
async def test_guard_emits_only_safe_next(path: str, query: bytes, expected: str) -> None:
    value = emitted_next(await redirect_for(path, query))
    assert value == expected
    assert safe_next(value) == value


# --- what a login page does with it ----------------------------------------------------------


async def login_page(request: Request) -> RedirectResponse:
    """The demo's login page after a successful sign-in: follow ``next``, safely."""
    return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)


LOGIN_APP = Starlette(routes=[Route("/login", login_page)])


@pytest.mark.parametrize("value", UNSAFE)
def test_login_page_never_follows_a_hostile_next(client_for: Client, value: str) -> None:
    response = client_for(LOGIN_APP).get(f"/login?next={quote(value, safe='')}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "query"), [
    ("/orders/42", b"page=2&sort=desc"),
    ("/café", b""),
    ("/search", b"next=https://evil.example"),
])
async def test_round_trip_lands_back_on_the_page(path: str, query: bytes) -> None:
    location = urlsplit(await redirect_for(path, query))
    response = await asgi_get(LOGIN_APP, location.path, query_string=location.query.encode())
    (back,) = response.header("location")
    assert (urlsplit(back).scheme, urlsplit(back).netloc) == ("", "")
    target = httpx.URL("http://testserver" + back)
    assert target.path == path
    assert target.query == query


# --- content negotiation -------------------------------------------------------------------


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


@requires_login
async def ws_guarded(websocket: WebSocket) -> None:
    await websocket.accept()  # pragma: no cover
    await websocket.close()  # pragma: no cover


ROUTES = [Route("/custom", raise_custom), Route("/stream", stream_then_deny),
          Route("/sync", sync_json), WebSocketRoute("/ws_late", ws_accept_then_deny),
          WebSocketRoute("/ws", ws_guarded)]


def test_raised_by_the_app_itself(client_for: Client) -> None:
    client = client_for(make_app(*ROUTES))
    as_json = client.get("/custom")
    assert as_json.status_code == 403
    assert as_json.json() == {"detail": "<b>owners</b> only"}
    as_html = client.get("/custom", headers={"accept": "text/html"})
    assert as_html.status_code == 403
    assert "&lt;b&gt;owners&lt;/b&gt; only" in as_html.text


def test_after_the_response_started_it_is_not_swallowed(client_for: Client) -> None:
    with pytest.raises(PermissionDenied):
        client_for(make_app(*ROUTES)).get("/stream")


@pytest.mark.anyio
async def test_plain_asgi_after_start_is_not_swallowed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        require_role(scope, Role.USER)

    sent: list[Message] = []
    with pytest.raises(NotAuthenticated):
        await asgi_get(JWTSessionMiddleware(app, secret_key=SECRET), sent=sent)
    assert [message["type"] for message in sent] == ["http.response.start"]


def test_websocket_after_accept_is_not_swallowed(client_for: Client) -> None:
    client = client_for(make_app(*ROUTES))
    with pytest.raises(NotAuthenticated), client.websocket_connect("/ws_late") as websocket:
        websocket.receive_text()


def assert_guards_answer(client: TestClient) -> None:
    """The guards of ROUTES answer as the middleware does: 401, or a browser's 303 to the
    login page, then 403 for the wrong role; a websocket refused with 401."""
    assert client.get("/sync").status_code == 401
    redirect = client.get("/sync", headers={"accept": BROWSER})
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Fsync"
    assert client.get("/custom").status_code == 403
    with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
        with client.websocket_connect("/ws"):
            pass  # pragma: no cover
    assert closed.value.status_code == 401  # the server's denial response


@pytest.mark.parametrize("wrap", ["starlette", "fastapi"])
def test_middleware_wrapping_the_app_from_outside(client_for: Client, wrap: str) -> None:
    # JWTSessionMiddleware(app): the app's own error middleware is inside the session
    # middleware then; the app's exception_handlers answer the guards' errors.
    inner: Starlette
    if wrap == "starlette":
        inner = Starlette(routes=ROUTES, exception_handlers=exception_handlers)
    else:
        inner = FastAPI(exception_handlers=exception_handlers)
        inner.router.routes.extend(ROUTES)
    assert_guards_answer(client_for(JWTSessionMiddleware(inner, secret_key=SECRET)))


@pytest.mark.anyio
@pytest.mark.parametrize("extensions", [{}, {"websocket.http.response": {}}])
async def test_websocket_refusal_with_and_without_the_denial_response(
        extensions: dict[str, object]) -> None:
    # A close before accept reaches real clients as a bare HTTP 403: a server with the
    # denial response extension answers 401 JSON, one without accepts and closes.
    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        messages.append(message)

    scope = {"type": "websocket", "path": "/ws", "raw_path": b"/ws", "root_path": "",
             "query_string": b"", "headers": [], "scheme": "ws", "subprotocols": [],
             "server": ("testserver", 80), "client": ("127.0.0.1", 1),
             "asgi": {"version": "3.0"}, "extensions": extensions}
    await JWTSessionMiddleware(make_app(*ROUTES), secret_key=SECRET)(scope, receive, send)
    if extensions:
        start, body = messages
        assert start["type"] == "websocket.http.response.start" and start["status"] == 401
        assert (b"content-type", b"application/json") in start["headers"]
        assert body == {"type": "websocket.http.response.body",
                        "body": b'{"detail":"Not authenticated"}'}
    else:
        accept, close = messages
        assert accept["type"] == "websocket.accept"
        assert close == {"type": "websocket.close", "code": 4401,
                         "reason": "Not authenticated"}


@pytest.mark.parametrize("wrap", ["starlette", "fastapi"])
def test_wrapping_from_outside_without_the_handlers(client_for: Client, wrap: str) -> None:
    # 0.1 code: JWTSessionMiddleware(app) around an app without exception_handlers. The
    # app's error middleware answers a guard's error with 500 and re-raises it; the
    # session middleware drops that 500 and answers the error itself.
    inner: Starlette
    if wrap == "starlette":
        inner = Starlette(routes=[*ROUTES, Route("/boom", boom)])
    else:
        inner = FastAPI()
        inner.router.routes.extend([*ROUTES, Route("/boom", boom)])
    middleware = JWTSessionMiddleware(inner, secret_key=SECRET)
    assert not inner.exception_handlers.get(AuthError)  # the app is left as it is
    client = client_for(middleware)
    assert client.get("/sync").json() == {"detail": "Not authenticated"}
    assert_guards_answer(client)
    # Any other error is still the app's 500, and still raised to the server.
    with pytest.raises(ZeroDivisionError):
        client.get("/boom")
    quiet = TestClient(middleware, raise_server_exceptions=False)
    response = quiet.get("/boom")
    assert response.status_code == 500 and response.text == "Internal Server Error"


def boom(request: Request) -> Response:
    return Response(str(1 / 0))


def test_bogus_cookie_is_expired_on_a_guard_response(client_for: Client) -> None:
    response = client_for(make_app(*ROUTES)).get("/sync", headers={"cookie": "session=bogus"})
    assert response.status_code == 401
    assert "session=" in response.headers["set-cookie"]
    assert "max-age=0" in response.headers["set-cookie"].lower()


def test_without_the_middleware(client_for: Client) -> None:
    app = Starlette(routes=[Route("/sync", sync_json)])
    with pytest.raises(RuntimeError, match="JWTSessionMiddleware"):
        client_for(app).get("/sync")


def test_login_url_option_and_mounts(client_for: Client) -> None:
    app = make_app(Mount("/shop", routes=[Route("/page", sync_json)]),
                   login_url="/auth/signin?from=guard")
    response = client_for(app).get("/shop/page?x=1", headers={"accept": BROWSER})
    assert response.status_code == 303
    assert response.headers["location"] == "/auth/signin?from=guard&next=%2Fshop%2Fpage%3Fx%3D1"


def test_mounted_sub_application_with_the_handler(client_for: Client) -> None:
    # A mounted Starlette or FastAPI app answers errors itself (500) before they reach
    # the middleware, like any exception handler of the outer app: it needs the handler.
    inner = FastAPI(exception_handlers=exception_handlers)
    inner.router.routes.extend(ROUTES)
    client = client_for(make_app(Mount("/sub", app=inner)))
    assert client.get("/sub/sync").status_code == 401
    redirect = client.get("/sub/sync", headers={"accept": BROWSER})
    assert redirect.headers["location"] == "/login?next=%2Fsub%2Fsync"
    with pytest.raises(WebSocketDisconnect) as closed:  # noqa: SIM117
        with client.websocket_connect("/sub/ws"):
            pass  # pragma: no cover
    assert closed.value.status_code == 401  # the server's denial response


def test_auth_errors() -> None:
    assert issubclass(NotAuthenticated, AuthError) and issubclass(PermissionDenied, AuthError)
    assert (NotAuthenticated().status_code, NotAuthenticated().close_code) == (401, 4401)
    assert (PermissionDenied().status_code, PermissionDenied().close_code) == (403, 4403)
    assert str(PermissionDenied("nope")) == "nope"
