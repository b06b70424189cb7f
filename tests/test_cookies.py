"""The session cookie on the wire: its attributes, chunks, expiry of every chunk, the size
budget, and the Cookie header parser."""

from __future__ import annotations

import re
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.cookies import CookieWriter, read_session_cookie
from asgi_jwt_session.errors import SessionTooLarge
from tests.conftest import SECRET, make_app, set_cookies, sign_in

Client = Callable[..., TestClient]


def cookie_attrs(line: str) -> dict[str, str]:
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(line)
    morsel = next(iter(parsed.values()))
    return {k: v for k, v in morsel.items() if v}


# --- attributes -------------------------------------------------------------------------


def test_secure_session(client_for: Client) -> None:
    secure = client_for(base_url="https://testserver", https_only=True)
    insecure = client_for(base_url="http://testserver", https_only=True)

    response = secure.post("/session", json={"some": "data"})
    assert "Secure" in set_cookies(response)[0]
    assert secure.get("/me").json()["session"] == {"some": "data"}

    # https_only=True always sets Secure: an http client never sends it back.
    response = insecure.post("/session", json={"some": "data"})
    assert "Secure" in set_cookies(response)[0]
    assert insecure.get("/me").json()["session"] == {}


def test_https_only_none_follows_the_scheme(client_for: Client) -> None:
    assert "Secure" in set_cookies(
        client_for(base_url="https://testserver").post("/session", json={"a": 1}))[0]
    assert "Secure" not in set_cookies(
        client_for(base_url="http://testserver").post("/session", json={"a": 1}))[0]
    assert "Secure" not in set_cookies(
        client_for(base_url="https://testserver", https_only=False)
        .post("/session", json={"a": 1}))[0]


def test_session_cookie_subpath(client_for: Client) -> None:
    app = Starlette(routes=[Mount("/second_app", app=make_app(path="/second_app"))])
    response = client_for(app).post("/second_app/session", json={"some": "data"})
    assert response.status_code == 200
    attrs = cookie_attrs(set_cookies(response)[0])
    assert attrs["path"] == "/second_app"


def test_session_cookie_without_max_age(client_for: Client) -> None:
    client = client_for(max_age=None)
    response = client.post("/session", json={"some": "data"})
    line = set_cookies(response)[0]
    assert "Max-Age" not in line and "Expires" not in line
    assert client.get("/me").json()["session"] == {"some": "data"}


def test_domain_cookie(client_for: Client) -> None:
    client = client_for(base_url="http://testserver.local", domain=".testserver.local")
    response = client.post("/session", json={"some": "data"})
    assert "Domain=.testserver.local" in set_cookies(response)[0]
    assert client.get("/me").json()["session"] == {"some": "data"}


def test_same_site_and_partitioned(client_for: Client) -> None:
    client = client_for(base_url="https://testserver", same_site="strict", partitioned=True)
    line = set_cookies(client.post("/session", json={"a": 1}))[0]
    assert "SameSite=Strict" in line and "Partitioned" in line


def test_same_site_none_cookies_are_always_secure(client_for: Client) -> None:
    client = client_for(same_site="none")
    line = set_cookies(client.post("/session", json={"a": 1}))[0]
    assert "SameSite=None" in line and "Secure" in line


def test_max_age_follows_the_absolute_lifetime(client_for: Client) -> None:
    line = set_cookies(sign_in(client_for(max_lifetime=100), "u1"))[0]
    max_age = int(re.search(r"Max-Age=(\d+)", line).group(1))  # type: ignore[union-attr]
    assert 95 <= max_age <= 100


@pytest.mark.parametrize("bad", [
    {"path": "/a;b"}, {"path": "/a\nb"}, {"path": "relative"}, {"domain": "x.com; secure"},
    {"domain": "ex\x00.com"}, {"same_site": "bogus"}, {"session_cookie": "a b"},
    {"max_age": 0}, {"same_site": "none", "https_only": False},
    {"path": "/" + "p" * 1100}, {"path": "/caf\u00e9"}, {"domain": "ex\u00e4mple.com"},
])
def test_options_that_cannot_make_a_cookie_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        JWTSessionMiddleware(Starlette(), secret_key=SECRET, **bad)


# --- chunks -----------------------------------------------------------------------------


def test_large_session_is_chunked_and_read_back(client_for: Client) -> None:
    client = client_for()
    big = {"blob": "x" * 5000}
    lines = set_cookies(client.post("/session", json=big))
    names = [line.split("=", 1)[0] for line in lines]
    assert names == ["session.0", "session.1"]
    assert all(len(line.encode()) <= 4096 for line in lines)
    assert client.get("/me").json()["session"] == big

    # Shrinking back to one cookie expires the chunks.
    lines = set_cookies(client.post("/session", json={"blob": "small"}))
    assert lines[0].startswith("session=")
    expired = sorted(line.split("=", 1)[0] for line in lines if "Max-Age=0" in line)
    assert expired == ["session.0", "session.1"]
    assert client.get("/me").json()["session"] == {"blob": "small"}


def test_clearing_a_chunked_session_expires_every_chunk(client_for: Client) -> None:
    client = client_for()
    client.post("/session", json={"blob": "y" * 7000})
    response = client.post("/clear")
    expired = sorted(re.findall(r"^(session\.\d+)=;", line)[0] for line in set_cookies(response))
    assert expired == ["session.0", "session.1", "session.2"]


def test_over_budget_session_fails_clearly(client_for: Client) -> None:
    with pytest.raises(SessionTooLarge, match="bytes, over the budget"):
        client_for().post("/session", json={"blob": "z" * 20000})


def test_writer_chunks_by_value_length_when_told() -> None:
    writer = CookieWriter("c", max_age=60, path="/", domain=None, same_site="lax",
                          chunk_size=100)
    lines = writer.set("t" * 250, secure=True, carried=["c", "c.0", "c.5"])
    assert [line.split("=", 1)[0] for line in lines] == ["c.0", "c.1", "c.2", "c", "c.5"]
    assert [len(line.split(";")[0].split("=", 1)[1]) for line in lines[:3]] == [100, 100, 50]
    assert all("; Secure" in line and "Max-Age=60" in line for line in lines[:3])
    assert all("Max-Age=0" in line for line in lines[3:])


# --- the Cookie header parser -------------------------------------------------------------


@pytest.mark.parametrize(("headers", "token", "carried"), [
    ([b"session=tok"], "tok", ["session"]),
    ([b"other=1; session= tok\t; x=y"], "tok", ["session"]),
    ([b"session=a; session=b"], "b", ["session"]),  # the last one wins, as in Starlette
    ([b"session.1=b", b"session.0=a"], "ab", ["session.1", "session.0"]),  # any order
    ([b"session.0=a; session.2=c"], None, ["session.0", "session.2"]),  # one missing
    ([b"session.x=a; session.-1=b; sessions=c"], None, []),  # not chunk names
    ([b"session="], None, ["session"]),
    ([b"__Secure-session=tok; theme=dark"], None, []),  # another cookie's name
    ([], None, []),
])
def test_read_session_cookie(headers: list[bytes], token: str | None,
                             carried: list[str]) -> None:
    assert read_session_cookie([(b"cookie", h) for h in headers], "session") == (token, carried)
