"""The session: data, users, login and logout, expiry, what one request may change."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from asgi_jwt_session import Role, Session, auth, login, logout
from asgi_jwt_session.session import SessionUser
from tests.conftest import Clock, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]


def test_login_and_logout(client_for: Client) -> None:
    client = client_for()
    client.post("/session", json={"cart": [1]})
    first = sign_in(client, "alice", "ADMIN").json()["jti"]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({"cart": [1]}, "alice", "ADMIN")

    # Signing in again issues a new session id (no fixation).
    second = sign_in(client, "alice", "ADMIN").json()["jti"]
    assert second != first
    # Another user signing in drops the previous user's data.
    sign_in(client, "bob")
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, "bob", "USER")

    response = client.get("/logout")
    assert "Max-Age=0" in set_cookies(response)[0]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, None, None)


def test_clear_signs_the_user_out(client_for: Client) -> None:
    client = client_for()
    sign_in(client, "u1")
    response = client.post("/clear")
    assert "Max-Age=0" in set_cookies(response)[0]
    body = client.get("/me").json()
    assert (body["session"], body["id"], body["role"]) == ({}, None, None)


def test_login_refuses_reserved_claims(client_for: Client) -> None:
    async def bad_login(request: Request) -> PlainTextResponse:
        with pytest.raises(ValueError, match="reserved"):
            login(request, "u", "USER", exp=1)
        with pytest.raises(ValueError):
            login(request, "", "USER")
        return PlainTextResponse("ok")

    assert client_for(make_app(Route("/", bad_login))).get("/").text == "ok"


def test_session_expires_attribute(client_for: Client, clock: Clock) -> None:
    seen: list[Any] = []

    async def read(request: Request) -> PlainTextResponse:
        session = auth(request)
        seen.append(session.expires if session else None)
        return PlainTextResponse("ok")

    client = client_for(make_app(Route("/expires", read)))
    sign_in(client, "u")
    clock.now += 60
    client.get("/expires")
    assert seen[-1] is not None
    assert seen[-1].timestamp() == clock.now - 60 + 30 * 86400


def test_nested_user_claims_are_not_shared_between_requests(client_for: Client) -> None:
    async def meddle(request: Request) -> JSONResponse:
        session = auth(request)
        assert session is not None and session.user is not None
        groups = session.user.claims["groups"]
        groups.append("admin")
        return JSONResponse(session.user.claims["groups"])

    async def sign_in_with_groups(request: Request) -> PlainTextResponse:
        login(request, "u1", "USER", groups=["a"])
        return PlainTextResponse("ok")

    client = client_for(make_app(Route("/in", sign_in_with_groups), Route("/meddle", meddle)))
    client.get("/in")
    assert client.get("/meddle").json() == ["a"]
    assert client.get("/meddle").json() == ["a"]


STORABLE: list[Any] = ["text", "", 0, -(1 << 63), (1 << 64) - 1, 1.5, True, False, None,
                      [], {}, [1, "a", None, [2.5]], {"a": {"b": [True, {"c": None}]}},
                      Role.ADMIN]


@pytest.mark.parametrize(("value", "message"), [
    (datetime(2024, 1, 2, tzinfo=UTC), r"session\['k'\] is a datetime .*isoformat"),
    (date(2024, 1, 2), r"is a date"),
    ((1, 2), r"is a tuple .*store a list"),
    ({1, 2}, r"is a set"),
    (frozenset(), r"is a frozenset"),
    (b"raw", r"is bytes"),
    (Decimal("1.10"), r"is a Decimal"),
    (uuid.UUID(int=1), r"is a UUID"),
    (object(), r"is a object"),
    (float("nan"), r"nan"),
    (float("inf"), r"inf"),
    (1 << 64, r"beyond 64 bits"),
    ({1: "one"}, r"session\['k'\] is a dict with a int key \(1\)"),
    ([1, {"at": datetime(2024, 1, 2)}], r"session\['k'\]\[1\]\['at'\] is a datetime"),
    ({"ids": (1, 2)}, r"session\['k'\]\['ids'\] is a tuple"),
])
def test_values_a_session_cannot_hold_are_refused_where_set(value: Any, message: str) -> None:
    # They once changed type on the way through the cookie (datetime -> str, tuple ->
    # list, int key -> str key) or failed as a 500 after the endpoint returned.
    for set_value in (lambda s: s.__setitem__("k", value), lambda s: s.update(k=value),
                      lambda s: s.update({"k": value}), lambda s: s.update([("k", value)]),
                      lambda s: s.setdefault("k", value), lambda s: s.__ior__({"k": value})):
        session = Session()
        with pytest.raises(TypeError, match=message):
            set_value(session)
        assert session == {} and not session.modified
    with pytest.raises(TypeError, match=message):
        Session({"k": value})
    with pytest.raises(TypeError, match=r"the claim k.* is"):
        Session().login("u", "USER", k=value)


def test_non_string_keys_are_refused() -> None:
    session = Session()
    for key in (1, 1.5, None, ("a",)):
        with pytest.raises(TypeError, match="session keys are strings"):
            session[key] = "v"  # type: ignore[index]
        with pytest.raises(TypeError, match="session keys are strings"):
            session.update({key: "v"})
    assert session == {} and not session.modified
    session.setdefault("k", [1])
    session.setdefault("k", (1,))  # present: not set, not checked
    assert session == {"k": [1]}


def test_session_values_round_trip(client_for: Client) -> None:
    async def store(request: Request) -> PlainTextResponse:
        for index, value in enumerate(STORABLE):
            request.session[f"v{index}"] = value
        return PlainTextResponse("ok")

    async def read(request: Request) -> JSONResponse:
        session = request.session
        assert [session[f"v{index}"] for index in range(len(STORABLE))] == STORABLE
        assert [type(session[f"v{index}"]) for index in range(len(STORABLE) - 1)] == [
            type(value) for value in STORABLE[:-1]]
        return JSONResponse(len(session))

    client = client_for(make_app(Route("/store", store), Route("/read", read)))
    assert client.get("/store").text == "ok"
    assert client.get("/read").json() == len(STORABLE)


def test_values_a_route_cannot_store_fail_in_the_route(client_for: Client) -> None:
    async def bad(request: Request) -> PlainTextResponse:
        try:
            request.session["when"] = datetime.now(UTC)
        except TypeError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        return PlainTextResponse("stored")

    response = client_for(make_app(Route("/bad", bad))).get("/bad")
    assert response.status_code == 400
    assert "session['when'] is a datetime" in response.text
    assert "set-cookie" not in response.headers


def test_login_on_a_websocket_is_refused(client_for: Client) -> None:
    # It once returned normally, and no cookie was ever set.
    async def ws_login(websocket: WebSocket) -> None:
        await websocket.accept()
        for conn in (websocket, websocket.scope):
            with pytest.raises(TypeError, match=r"a websocket cannot set the session cookie"
                                                r".*Sign in over HTTP"):
                login(conn, "alice", "USER")
        await websocket.send_json({"user": auth(websocket) is not None})
        await websocket.close()

    client = client_for(make_app(WebSocketRoute("/ws-login", ws_login)))
    with client.websocket_connect("/ws-login") as websocket:
        assert websocket.receive_json() == {"user": False}
    sign_in(client, "alice")  # over HTTP: the socket sees the session
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json()["user"] == "alice"


def test_logout_on_a_websocket_is_refused(client_for: Client) -> None:
    # It once emptied the socket's session and returned: no cookie was expired, so the
    # browser stayed signed in.
    async def ws_logout(websocket: WebSocket) -> None:
        await websocket.accept()
        for conn in (websocket, websocket.scope):
            with pytest.raises(TypeError, match=r"a websocket cannot expire the session "
                                                r"cookie.*Sign out over HTTP"):
                logout(conn)
        signed_in = auth(websocket)
        user = signed_in.user if signed_in is not None else None
        await websocket.send_json({"user": None if user is None else user.id})
        await websocket.close()

    client = client_for(make_app(WebSocketRoute("/ws-logout", ws_logout)))
    sign_in(client, "alice")
    with client.websocket_connect("/ws-logout") as websocket:
        assert websocket.receive_json() == {"user": "alice"}  # the session is untouched
    assert client.get("/me").json()["id"] == "alice"


def test_a_user_built_from_json_is_a_read_only_session_user() -> None:
    user = SessionUser.from_json("alice", "ADMIN", b'{"email":"a@example.com"}')
    assert type(user) is SessionUser
    assert (user.id, user.role, user.claims) == ("alice", "ADMIN", {"email": "a@example.com"})
    assert user == SessionUser("alice", "ADMIN", {"email": "a@example.com"})
    for name in ("id", "role", "claims_json", "actor", "other"):
        with pytest.raises(AttributeError, match="read-only"):
            setattr(user, name, "mallory")
    assert user.id == "alice"

    class Member(SessionUser):
        __slots__ = ()

    member = Member.from_json("bob", "USER", None, actor=user)
    assert type(member) is Member
    assert (member.id, member.role, member.claims, member.actor) == ("bob", "USER", {}, user)
    with pytest.raises(AttributeError, match="read-only"):
        member.role = "ADMIN"
