"""CSRF: the double-submit token, Fetch Metadata and Origin checks, on the session
endpoints and on an app's own forms (``csrf_token``, ``set_csrf_cookie``, ``verify_csrf``)."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session.csrf import csrf_token, set_csrf_cookie, verify_csrf
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.errors import CSRFError
from tests.conftest import Users, fetch_csrf, make_app, set_cookies, sign_in

TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
BASE = "http://testserver"
ENDPOINTS = ["/auth/session/refresh", "/auth/signout"]


async def form_page(request: Request) -> Response:
    token = csrf_token(request)
    assert csrf_token(request) == token  # one token per request, minted or not
    response = HTMLResponse(f'<form method="post"><input name="csrf_token" value="{token}">')
    set_csrf_cookie(request, response)
    return response


async def form_post(request: Request) -> Response:
    await verify_csrf(request)
    form = await request.form()  # still readable after verify_csrf read the token field
    return PlainTextResponse(f"saved {form['name']}")


@pytest.fixture
def app(users: Users) -> Starlette:
    return make_app(session_routes(user_loader=users), Route("/form", form_page),
                    Route("/form", form_post, methods=["POST"]))


@pytest.fixture
def client(client_for: Callable[..., TestClient], app: Starlette) -> TestClient:
    """Alice, signed in."""
    client = client_for(app)
    sign_in(client, "alice")
    return client


def signed_in_as(client: TestClient) -> str | None:
    user: str | None = client.get("/me").json()["id"]
    return user


# --- the token cookie --------------------------------------------------------------------


def test_csrf_tokens_are_random_and_bad_cookies_are_replaced(
        client_for: Callable[..., TestClient], app: Starlette) -> None:
    assert fetch_csrf(client_for(app)) != fetch_csrf(client_for(app))
    client = client_for(app)
    client.cookies.set("csrftoken", "short")
    response = client.get("/auth/session")
    token = response.json()["csrfToken"]
    assert token != "short" and TOKEN.fullmatch(token)
    [line] = set_cookies(response, "csrftoken")
    assert line.startswith(f"csrftoken={token};")


def test_csrf_cookie_is_secure_over_https(client_for: Callable[..., TestClient],
                                          app: Starlette) -> None:
    response = client_for(app, base_url="https://testserver").get("/auth/session")
    [line] = set_cookies(response, "csrftoken")
    assert "secure" in line.lower()


# --- probes ---------------------------------------------------------------------------


REFUSED = [
    pytest.param({"sec-fetch-site": "cross-site"}, id="sec-fetch-site-cross-site"),
    pytest.param({"sec-fetch-site": "same-site"}, id="sec-fetch-site-same-site"),
    pytest.param({"sec-fetch-site": "cross-site", "origin": BASE}, id="cross-site-own-origin"),
    pytest.param({"origin": "http://evil.example"}, id="origin-evil"),
    pytest.param({"origin": "null"}, id="origin-null"),
    pytest.param({"origin": "https://testserver"}, id="origin-other-scheme"),
    pytest.param({"origin": "http://testserver:8080"}, id="origin-other-port"),
    pytest.param({"origin": "http://testserver.evil.example"}, id="origin-suffix"),
    pytest.param({"origin": "https://app.example"}, id="untrusted-origin"),
]

ALLOWED = [
    pytest.param({}, id="no-fetch-metadata"),
    pytest.param({"sec-fetch-site": "same-origin"}, id="sec-fetch-site-same-origin"),
    pytest.param({"sec-fetch-site": "none"}, id="sec-fetch-site-none"),
    pytest.param({"origin": BASE}, id="origin-own"),
    pytest.param({"origin": "HTTP://TestServer:80"}, id="origin-own-spelled-otherwise"),
    pytest.param({"sec-fetch-site": "same-origin", "origin": BASE}, id="both-same"),
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("headers", REFUSED)
def test_cross_site_post_is_refused(client: TestClient, path: str,
                                    headers: dict[str, str]) -> None:
    token = fetch_csrf(client)
    response = client.post(path, headers={"x-csrf-token": token, **headers})
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF check failed")
    assert set_cookies(response, "session") == []
    assert signed_in_as(client) == "alice"  # nothing happened


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("headers", ALLOWED)
def test_same_origin_post_passes(client: TestClient, path: str,
                                 headers: dict[str, str]) -> None:
    token = fetch_csrf(client)
    response = client.post(path, headers={"x-csrf-token": token, **headers})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    ("cookie", "sent"),
    [
        pytest.param(None, None, id="neither"),
        pytest.param(None, "A" * 43, id="no-cookie"),
        pytest.param("cookie", None, id="no-header"),
        pytest.param("cookie", "B" * 43, id="other-token"),
        pytest.param("cookie", "cookie-prefix", id="prefix-of-token"),
        pytest.param("", "", id="both-empty"),
        pytest.param("short", "short", id="both-malformed"),
    ],
)
def test_double_submit_token(client: TestClient, path: str, cookie: str | None,
                             sent: str | None) -> None:
    token = fetch_csrf(client)
    client.cookies.delete("csrftoken")
    if cookie is not None:
        client.cookies.set("csrftoken", token if cookie == "cookie" else cookie)
    headers = {"sec-fetch-site": "same-origin"}
    if sent is not None:
        headers["x-csrf-token"] = token[:20] if sent == "cookie-prefix" else sent
    response = client.post(path, headers=headers)
    assert response.status_code == 403
    assert signed_in_as(client) == "alice"


def test_token_compared_in_constant_time(client: TestClient,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr("asgi_jwt_session.csrf.hmac.compare_digest", spy)
    token = fetch_csrf(client)
    assert client.post("/auth/signout", headers={"x-csrf-token": token}).is_success
    assert compared == [(token.encode(), token.encode())]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_token_in_a_form_field(client: TestClient, path: str) -> None:
    token = fetch_csrf(client)
    wrong = client.post(path, data={"csrf_token": "C" * 43})
    assert wrong.status_code == 403
    assert client.post(path, data={"csrf_token": token}).status_code == 200


def test_token_in_a_multipart_form_field(client: TestClient) -> None:
    token = fetch_csrf(client)
    response = client.post("/auth/signout", data={"csrf_token": token},
                           files={"f": ("a.txt", b"x")})
    assert response.status_code == 200


@pytest.mark.parametrize("path", ENDPOINTS)
def test_form_post_without_a_form_parser(client: TestClient, path: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # What Starlette has when python-multipart is not installed.
    monkeypatch.setattr("starlette.requests.parse_options_header", None)
    token = fetch_csrf(client)
    response = client.post(path, data={"csrf_token": token})
    assert response.status_code == 403
    assert response.json()["detail"] == "CSRF check failed: no CSRF token sent"
    assert signed_in_as(client) == "alice"
    # The header still works; a sign-out form's `next` field cannot be read.
    response = client.post(path + "?next=/bye", data={"next": "/elsewhere"},
                           headers={"x-csrf-token": token, "accept": "text/html"})
    if path == "/auth/signout":
        assert response.status_code == 303 and response.headers["location"] == "/bye"
    else:
        assert response.status_code == 200


def test_refused_browser_post_gets_a_403_page(client: TestClient) -> None:
    response = client.post("/auth/signout", headers={"accept": "text/html"},
                           data={"csrf_token": "D" * 43})
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")


# --- options --------------------------------------------------------------------------


def test_trusted_origins(client_for: Callable[..., TestClient], users: Users) -> None:
    app = make_app(session_routes(user_loader=users, trusted_origins=["https://app.example"]))
    client = client_for(app)
    sign_in(client, "alice")
    token = fetch_csrf(client)
    for site in ("cross-site", "same-site", None):
        headers = {"x-csrf-token": token, "origin": "https://app.example"}
        if site:
            headers["sec-fetch-site"] = site
        response = client.post("/auth/session/refresh", headers=headers)
        assert response.status_code == 200
    other = {"x-csrf-token": token, "origin": "https://evil.example",
             "sec-fetch-site": "cross-site"}
    assert client.post("/auth/session/refresh", headers=other).status_code == 403
    # A trusted origin still needs the token.
    no_token = {"origin": "https://app.example", "sec-fetch-site": "cross-site"}
    assert client.post("/auth/session/refresh", headers=no_token).status_code == 403


def test_trusted_origins_must_be_origins() -> None:
    for bad in ("app.example", "https://app.example/path", "ftp://app.example", "https://"):
        with pytest.raises(ValueError, match="not an origin"):
            session_routes(trusted_origins=[bad])


def test_custom_csrf_names(client_for: Callable[..., TestClient], users: Users) -> None:
    app = make_app(session_routes(user_loader=users, csrf_cookie="xsrf", csrf_header="x-xsrf"))
    client = client_for(app)
    sign_in(client, "alice")
    token = fetch_csrf(client)
    assert client.cookies["xsrf"] == token
    assert client.get("/auth/session").json()["csrfHeader"] == "x-xsrf"
    refused = client.post("/auth/signout", headers={"x-csrf-token": token})
    assert refused.status_code == 403
    assert client.post("/auth/signout", headers={"x-xsrf": token}).status_code == 200


# --- an app's own forms ---------------------------------------------------------------------


def test_csrf_helpers_for_app_forms(client_for: Callable[..., TestClient],
                                    app: Starlette) -> None:
    client = client_for(app)
    page = client.get("/form")
    token = client.cookies["csrftoken"]
    assert f'value="{token}"' in page.text
    assert set_cookies(client.get("/form"), "csrftoken") == []  # kept
    assert client.post("/form", data={"name": "x"}).status_code == 403
    cross = client.post("/form", data={"name": "x", "csrf_token": token},
                        headers={"sec-fetch-site": "cross-site"})
    assert cross.status_code == 403
    ok = client.post("/form", data={"name": "x", "csrf_token": token})
    assert ok.status_code == 200 and ok.text == "saved x"


def test_csrf_error_is_a_403() -> None:
    assert CSRFError().status_code == 403
