"""Open-redirect probes: the ``next`` the guards emit, and ``safe_next`` on the login side."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, Role, require_role, safe_next

SECRET = "r" * 40
BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"

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


APP = JWTSessionMiddleware(guarded, secret_key=SECRET)


async def redirect_for(path: str, query: bytes = b"") -> str:
    """Send a request for ``path`` (as the server decoded it) to a guarded plain ASGI
    app, and return the ``Location`` of the login redirect."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "root_path": "",
             "query_string": query, "headers": [(b"accept", BROWSER.encode()),
                                                (b"host", b"testserver")],
             "server": ("testserver", 80), "client": ("127.0.0.1", 1234)}
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await APP(scope, receive, send)
    start = sent[0]
    assert start["status"] == 303
    locations = [value for key, value in start["headers"] if key == b"location"]
    assert len(locations) == 1
    location = locations[0].decode("latin-1")
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


@pytest.mark.anyio
@pytest.mark.parametrize("value", UNSAFE)
async def test_login_page_never_follows_a_hostile_next(value: str) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=LOGIN_APP),
                                 base_url="http://testserver") as client:
        response = await client.get(f"/login?next={quote(value, safe='')}")
    assert response.status_code == 303
    assert response.headers["location"] == "/"


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "query"), [
    ("/orders/42", b"page=2&sort=desc"),
    ("/café", b""),
    ("/search", b"next=https://evil.example"),
])
async def test_round_trip_lands_back_on_the_page(path: str, query: bytes) -> None:
    location = await redirect_for(path, query)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=LOGIN_APP),
                                 base_url="http://testserver") as client:
        response = await client.get(location)
    back = urlsplit(response.headers["location"])
    assert (back.scheme, back.netloc) == ("", "")
    target = httpx.URL("http://testserver" + response.headers["location"])
    assert target.path == path
    assert target.query == query
