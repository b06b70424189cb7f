"""JWTSessionMiddleware as a drop-in for Starlette's SessionMiddleware, and its additions."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from asgi_jwt_session import JWTSessionMiddleware, Keyring, SessionTooLarge, auth, login, logout

SECRET = "s" * 40


async def view_session(request: Request) -> JSONResponse:
    session = auth(request)
    return JSONResponse({
        "session": dict(request.session),
        "user": session.user.id if session and session.user else None,
        "role": session.user.role if session and session.user else None,
    })


async def update_session(request: Request) -> JSONResponse:
    data = await request.json()
    request.session.update(data)
    return JSONResponse({"session": dict(request.session)})


async def clear_session(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"session": dict(request.session)})


async def do_login(request: Request) -> JSONResponse:
    login(request, request.query_params["user"], request.query_params.get("role", "USER"),
          email="u@example.com")
    return JSONResponse({"jti": request.session.jti})  # type: ignore[attr-defined]


async def do_logout(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({})


async def touch_nothing(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def ws_session(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"session": dict(websocket.session),
                               "user": auth(websocket) and auth(websocket).user.id})  # type: ignore[union-attr]
    await websocket.close()


def make_app(**options: Any) -> Starlette:
    secret = options.pop("secret_key", SECRET)
    return Starlette(
        routes=[
            Route("/view_session", view_session),
            Route("/update_session", update_session, methods=["POST"]),
            Route("/clear_session", clear_session, methods=["POST"]),
            Route("/login", do_login),
            Route("/logout", do_logout),
            Route("/plain", touch_nothing),
            WebSocketRoute("/ws", ws_session),
        ],
        middleware=[Middleware(JWTSessionMiddleware, secret_key=secret, **options)],
    )


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_attrs(line: str) -> dict[str, str]:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(line)
    morsel = next(iter(parsed.values()))
    return {k: v for k, v in morsel.items() if v}


@pytest.fixture
def client_for() -> Callable[..., TestClient]:
    def build(base_url: str = "http://testserver", **options: Any) -> TestClient:
        return TestClient(make_app(**options), base_url=base_url)
    return build


# --- behaviours of Starlette's own SessionMiddleware tests -------------------------------


def test_session(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    assert client.get("/view_session").json()["session"] == {}

    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    line = set_cookies(response)[0]
    assert "HttpOnly" in line and "SameSite=Lax" in line and "Max-Age=2592000" in line
    assert "Secure" not in line  # http request, https_only=None

    assert client.get("/view_session").json()["session"] == {"some": "data"}

    response = client.post("/clear_session")
    assert response.json() == {"session": {}}
    assert client.get("/view_session").json()["session"] == {}


def test_untouched_empty_session_sets_no_cookie(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    response = client.get("/view_session")
    assert set_cookies(response) == []
    assert "cookie" in response.headers["vary"].lower()  # accessed
    response = client.get("/plain")
    assert set_cookies(response) == []
    assert "vary" not in response.headers  # never accessed


def test_reading_a_session_does_not_reissue_it(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    client.post("/update_session", json={"a": 1})
    for _ in range(3):
        assert set_cookies(client.get("/view_session")) == []


def test_session_expires(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_age=1, leeway=0)
    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}
    # Replay the cookie after it expired: an expired token reads as empty.
    cookie = set_cookies(response)[0].split(";")[0]
    time.sleep(2.1)
    fresh = TestClient(client.app)
    response = fresh.get("/view_session", headers={"cookie": cookie})
    assert response.json()["session"] == {}
    assert "Max-Age=0" in set_cookies(response)[0]


def test_secure_session(client_for: Callable[..., TestClient]) -> None:
    secure = client_for(base_url="https://testserver", https_only=True)
    insecure = client_for(base_url="http://testserver", https_only=True)

    response = secure.post("/update_session", json={"some": "data"})
    assert "Secure" in set_cookies(response)[0]
    assert secure.get("/view_session").json()["session"] == {"some": "data"}

    # https_only=True always sets Secure: an http client never sends it back.
    response = insecure.post("/update_session", json={"some": "data"})
    assert "Secure" in set_cookies(response)[0]
    assert insecure.get("/view_session").json()["session"] == {}


def test_https_only_none_follows_the_scheme(client_for: Callable[..., TestClient]) -> None:
    assert "Secure" in set_cookies(
        client_for(base_url="https://testserver").post("/update_session", json={"a": 1}))[0]
    assert "Secure" not in set_cookies(
        client_for(base_url="http://testserver").post("/update_session", json={"a": 1}))[0]
    assert "Secure" not in set_cookies(
        client_for(base_url="https://testserver", https_only=False)
        .post("/update_session", json={"a": 1}))[0]


def test_session_cookie_subpath() -> None:
    second_app = make_app(path="/second_app")
    app = Starlette(routes=[Mount("/second_app", app=second_app)])
    client = TestClient(app)
    response = client.post("/second_app/update_session", json={"some": "data"})
    assert response.status_code == 200
    attrs = cookie_attrs(set_cookies(response)[0])
    assert attrs["path"] == "/second_app"


def test_invalid_session_cookie(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    response = client.post("/update_session", json={"some": "data"})
    assert response.json() == {"session": {"some": "data"}}

    client.cookies.set("session", "invalid")
    response = client.get("/view_session")
    assert response.status_code == 200
    assert response.json()["session"] == {}
    assert "Max-Age=0" in set_cookies(response)[0]


def test_session_cookie_without_max_age(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_age=None)
    response = client.post("/update_session", json={"some": "data"})
    line = set_cookies(response)[0]
    assert "Max-Age" not in line and "Expires" not in line
    assert client.get("/view_session").json()["session"] == {"some": "data"}


def test_domain_cookie(client_for: Callable[..., TestClient]) -> None:
    client = client_for(base_url="http://testserver.local", domain=".testserver.local")
    response = client.post("/update_session", json={"some": "data"})
    assert "Domain=.testserver.local" in set_cookies(response)[0]
    assert client.get("/view_session").json()["session"] == {"some": "data"}


def test_same_site_and_partitioned(client_for: Callable[..., TestClient]) -> None:
    client = client_for(base_url="https://testserver", same_site="strict", partitioned=True)
    line = set_cookies(client.post("/update_session", json={"a": 1}))[0]
    assert "SameSite=Strict" in line and "Partitioned" in line


@pytest.mark.parametrize("bad", [
    {"path": "/a;b"}, {"path": "/a\nb"}, {"path": "relative"}, {"domain": "x.com; secure"},
    {"domain": "ex\x00.com"}, {"same_site": "bogus"}, {"session_cookie": "a b"},
    {"max_age": 0}, {"same_site": "none", "https_only": False},
])
def test_bad_options_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JWTSessionMiddleware(make_app(), secret_key=SECRET, **bad)


def test_short_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        JWTSessionMiddleware(make_app(), secret_key="short")


def test_websocket_reads_the_session(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    client.get("/login", params={"user": "u1"})
    client.post("/update_session", json={"k": "v"})
    with client.websocket_connect("/ws") as ws:
        assert ws.receive_json() == {"session": {"k": "v"}, "user": "u1"}


# --- users, login, logout ---------------------------------------------------------------


def test_login_and_logout(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    client.post("/update_session", json={"cart": [1]})
    first = client.get("/login", params={"user": "alice", "role": "ADMIN"}).json()["jti"]
    data = client.get("/view_session").json()
    assert data == {"session": {"cart": [1]}, "user": "alice", "role": "ADMIN"}

    # Signing in again issues a new session id (no fixation).
    second = client.get("/login", params={"user": "alice", "role": "ADMIN"}).json()["jti"]
    assert second != first
    # Another user signing in drops the previous user's data.
    client.get("/login", params={"user": "bob"})
    assert client.get("/view_session").json() == {"session": {}, "user": "bob", "role": "USER"}

    response = client.get("/logout")
    assert "Max-Age=0" in set_cookies(response)[0]
    assert client.get("/view_session").json() == {"session": {}, "user": None, "role": None}


def test_login_refuses_reserved_claims() -> None:
    async def bad_login(request: Request) -> PlainTextResponse:
        with pytest.raises(ValueError, match="reserved"):
            login(request, "u", "USER", exp=1)
        with pytest.raises(ValueError):
            login(request, "", "USER")
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", bad_login)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    assert TestClient(app).get("/").text == "ok"


def test_session_expires_attribute(client_for: Callable[..., TestClient]) -> None:
    seen: list[Any] = []

    async def read(request: Request) -> PlainTextResponse:
        session = auth(request)
        seen.append(session.expires if session else None)
        return PlainTextResponse("ok")

    app = make_app()
    app.router.routes.append(Route("/expires", read))
    client = TestClient(app)
    client.get("/login", params={"user": "u"})
    client.get("/expires")
    expires = seen[-1]
    assert expires is not None
    assert abs(expires.timestamp() - (time.time() + 30 * 86400)) < 60


# --- renewal ----------------------------------------------------------------------------


def test_renewed_after_update_age_only(client_for: Callable[..., TestClient]) -> None:
    client = client_for(update_age=2)  # times are whole seconds: 2 s leaves a margin
    client.get("/login", params={"user": "u"})
    assert set_cookies(client.get("/view_session")) == []
    time.sleep(2.1)
    renewed = set_cookies(client.get("/view_session"))
    assert len(renewed) == 1 and "Max-Age=2592000" in renewed[0]
    assert set_cookies(client.get("/view_session")) == []
    assert client.get("/view_session").json()["user"] == "u"


def test_absolute_lifetime_caps_sliding(client_for: Callable[..., TestClient]) -> None:
    client = client_for(update_age=0, max_lifetime=2, leeway=0)
    client.get("/login", params={"user": "u"})
    line = set_cookies(client.get("/view_session"))[0]
    assert client.get("/view_session").json()["user"] == "u"
    token = line.split(";")[0].split("=", 1)[1]
    time.sleep(3.1)
    fresh = TestClient(client.app)
    fresh.cookies.set("session", token)
    response = fresh.get("/view_session")
    assert response.json()["user"] is None
    assert "Max-Age=0" in set_cookies(response)[0]


def test_rotation_reissues_with_the_newest_key() -> None:
    old, new = "o" * 40, "n" * 40
    old_client = TestClient(make_app(secret_key=old))
    old_client.get("/login", params={"user": "u"})
    token = old_client.cookies["session"]

    rotated = TestClient(make_app(secret_key=[new, old]))
    rotated.cookies.set("session", token)
    response = rotated.get("/view_session")
    assert response.json()["user"] == "u"
    reissued = set_cookies(response)
    assert len(reissued) == 1
    new_token = reissued[0].split(";")[0].split("=", 1)[1]
    assert new_token != token
    assert set_cookies(rotated.get("/view_session")) == []

    # The new token is readable by an app that only knows the new key.
    only_new = TestClient(make_app(secret_key=Keyring(new)))
    only_new.cookies.set("session", new_token)
    assert only_new.get("/view_session").json()["user"] == "u"
    # And the old token is not.
    response = TestClient(only_new.app).get("/view_session", headers={"cookie": f"session={token}"})
    assert response.json()["user"] is None


# --- chunking ---------------------------------------------------------------------------


def test_large_session_is_chunked_and_read_back(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    big = {"blob": "x" * 5000}
    lines = set_cookies(client.post("/update_session", json=big))
    names = [line.split("=", 1)[0] for line in lines]
    assert names == ["session.0", "session.1"]
    assert all(len(line.encode()) <= 4096 for line in lines)
    assert client.get("/view_session").json()["session"] == big

    # Shrinking back to one cookie expires the chunks.
    lines = set_cookies(client.post("/update_session", json={"blob": "small"}))
    assert lines[0].startswith("session=")
    expired = sorted(line.split("=", 1)[0] for line in lines if "Max-Age=0" in line)
    assert expired == ["session.0", "session.1"]
    assert client.get("/view_session").json()["session"] == {"blob": "small"}


def test_clearing_a_chunked_session_expires_every_chunk(
        client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    client.post("/update_session", json={"blob": "y" * 7000})
    response = client.post("/clear_session")
    expired = sorted(re.findall(r"^(session\.\d+)=;", line)[0] for line in set_cookies(response))
    assert expired == ["session.0", "session.1", "session.2"]


def test_over_budget_session_fails_clearly() -> None:
    app = make_app()
    client = TestClient(app, raise_server_exceptions=True)
    with pytest.raises(SessionTooLarge, match="bytes, over the budget"):
        client.post("/update_session", json={"blob": "z" * 20000})


# --- raw ASGI, no Starlette routing -----------------------------------------------------


@pytest.mark.anyio
async def test_plain_asgi_app() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        session = scope["session"]
        session["hits"] = session.get("hits", 0) + 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(session["hits"]).encode()})

    wrapped = JWTSessionMiddleware(app, secret_key=SECRET)
    transport = httpx.ASGITransport(app=wrapped)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/")).text == "1"
        assert (await client.get("/")).text == "2"


@pytest.mark.anyio
async def test_lifespan_passes_through() -> None:
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        events.append(scope["type"])
        assert "session" not in scope

    await JWTSessionMiddleware(app, secret_key=SECRET)({"type": "lifespan"}, None, None)
    assert events == ["lifespan"]


def test_auth_marks_the_response_as_cookie_dependent() -> None:
    async def who(request: Request) -> PlainTextResponse:
        session = auth(request)
        return PlainTextResponse(session.user.id if session and session.user else "-")

    async def vary_star(request: Request) -> PlainTextResponse:
        auth(request)
        return PlainTextResponse("*", headers={"vary": "Accept-Encoding"})

    app = Starlette(routes=[Route("/who", who), Route("/vary", vary_star),
                            Route("/login", do_login)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    client = TestClient(app)
    assert client.get("/who").headers["vary"] == "Cookie"
    client.get("/login", params={"user": "u"})
    response = client.get("/who")
    assert response.text == "u" and response.headers["vary"] == "Cookie"
    assert client.get("/vary").headers["vary"] == "Accept-Encoding, Cookie"


# --- edge cases -------------------------------------------------------------------------


def test_clear_signs_the_user_out(client_for: Callable[..., TestClient]) -> None:
    client = client_for()
    client.get("/login", params={"user": "u1"})
    response = client.post("/clear_session")
    assert "Max-Age=0" in set_cookies(response)[0]
    assert client.get("/view_session").json() == {"session": {}, "user": None, "role": None}


def test_a_renewal_varies_on_cookie_even_if_the_app_never_read_the_session(
        client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for()
    client.get("/login", params={"user": "u1"})
    later = time.time() + 2 * 86400
    monkeypatch.setattr(time, "time", lambda: later)
    response = client.get("/plain")
    assert len(set_cookies(response)) == 1
    assert response.headers["vary"] == "Cookie"


def test_renewal_comes_before_a_short_max_age_runs_out(
        client_for: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    client = client_for(max_age=3600)  # update_age (a day) is longer than the token lives
    client.get("/login", params={"user": "u1"})
    start = time.time()
    monkeypatch.setattr(time, "time", lambda: start + 1700)
    assert set_cookies(client.get("/view_session")) == []
    monkeypatch.setattr(time, "time", lambda: start + 1900)
    assert len(set_cookies(client.get("/view_session"))) == 1
    monkeypatch.setattr(time, "time", lambda: start + 3000)  # past the first token's life
    assert client.get("/view_session").json()["user"] == "u1"


def test_nested_user_claims_are_not_shared_between_requests() -> None:
    async def sign_in(request: Request) -> PlainTextResponse:
        login(request, "u1", "USER", groups=["a"])
        return PlainTextResponse("ok")

    async def meddle(request: Request) -> JSONResponse:
        session = auth(request)
        assert session is not None and session.user is not None
        groups = session.user.claims["groups"]
        groups.append("admin")
        return JSONResponse(session.user.claims["groups"])

    app = Starlette(routes=[Route("/in", sign_in), Route("/meddle", meddle)],
                    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)])
    client = TestClient(app)
    client.get("/in")
    assert client.get("/meddle").json() == ["a"]
    assert client.get("/meddle").json() == ["a"]


def test_non_string_keys_become_strings_as_in_starlette(
        client_for: Callable[..., TestClient]) -> None:
    async def int_key(request: Request) -> PlainTextResponse:
        request.session[1] = "one"
        return PlainTextResponse("ok")

    app = make_app()
    app.router.routes.append(Route("/int", int_key))
    client = TestClient(app)
    assert client.get("/int").status_code == 200
    assert client.get("/view_session").json()["session"] == {"1": "one"}


def test_max_age_follows_the_absolute_lifetime(client_for: Callable[..., TestClient]) -> None:
    client = client_for(max_lifetime=100)
    line = set_cookies(client.get("/login", params={"user": "u1"}))[0]
    max_age = int(re.search(r"Max-Age=(\d+)", line).group(1))  # type: ignore[union-attr]
    assert 95 <= max_age <= 100


def test_same_site_none_cookies_are_always_secure(client_for: Callable[..., TestClient]) -> None:
    client = client_for(same_site="none")
    line = set_cookies(client.post("/update_session", json={"a": 1}))[0]
    assert "SameSite=None" in line and "Secure" in line


@pytest.mark.parametrize("bad", [{"path": "/" + "p" * 1100}, {"path": "/caf\u00e9"},
                                 {"domain": "ex\u00e4mple.com"}])
def test_attributes_that_cannot_make_a_cookie_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JWTSessionMiddleware(make_app(), secret_key=SECRET, **bad)


def test_config_and_keyword_options_do_not_mix() -> None:
    from asgi_jwt_session import SessionConfig

    with pytest.raises(TypeError, match="config"):
        JWTSessionMiddleware(make_app(), SECRET, config=SessionConfig(), update_age=5)
