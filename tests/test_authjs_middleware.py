"""The middleware in Auth.js format, against tokens made and read by the real @auth/core."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asgi_jwt_session import JWTSessionMiddleware, Role, auth, logout, require_role
from tests.authjs_node import AuthJS, authjs_fixture  # noqa: F401

SECRET = "authjs-secret-" + "q" * 32
PLAIN = "authjs.session-token"
SECURE = "__Secure-authjs.session-token"


async def whoami(request: Request) -> JSONResponse:
    session = auth(request)
    if session is None or session.user is None:
        return JSONResponse({"user": None})
    user = session.user
    return JSONResponse({"user": user.id, "role": user.role, "email": user.get("email"),
                         "name": user.get("name")})


async def admin(request: Request) -> JSONResponse:
    user = require_role(request, Role.ADMIN)
    return JSONResponse({"admin": user.id})


async def promote(request: Request) -> JSONResponse:
    session = auth(request)
    assert session is not None
    session.set_role(Role.ADMIN, version=2)
    return JSONResponse({"ok": True})


async def sign_out(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({"ok": True})


def make_client(base_url: str = "http://testserver", **options: Any) -> TestClient:
    options.setdefault("secret_key", SECRET)
    app = Starlette(
        routes=[Route("/me", whoami), Route("/admin", admin), Route("/promote", promote),
                Route("/signout", sign_out)],
        middleware=[Middleware(JWTSessionMiddleware, format="authjs", **options)],
    )
    return TestClient(app, base_url=base_url)


def claims(role: str = "USER", **extra: Any) -> dict[str, Any]:
    return {"sub": "user-1", "name": "Ada", "email": "ada@example.com", "role": role, **extra}


def test_reads_an_authjs_cookie_over_http(authjs: AuthJS) -> None:
    token = authjs.encode(claims(), SECRET, PLAIN)
    client = make_client()
    response = client.get("/me", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json() == {"user": "user-1", "role": "USER", "email": "ada@example.com",
                               "name": "Ada"}
    assert response.headers.get_list("set-cookie") == []  # Auth.js stays the writer


def test_reads_the_secure_cookie_over_https(authjs: AuthJS) -> None:
    token = authjs.encode(claims("ADMIN"), SECRET, SECURE)
    client = make_client("https://testserver")
    response = client.get("/admin", headers={"cookie": f"{SECURE}={token}"})
    assert response.json() == {"admin": "user-1"}
    # The same token under the http name was made with the other salt: refused.
    response = client.get("/me", headers={"cookie": f"{PLAIN}={token}"})
    assert response.json() == {"user": None}


def test_guards_work_on_authjs_sessions(authjs: AuthJS) -> None:
    client = make_client()
    user = authjs.encode(claims("USER"), SECRET, PLAIN)
    response = client.get("/admin", headers={"cookie": f"{PLAIN}={user}", "accept": "*/*"})
    assert response.status_code == 403
    assert client.get("/admin", headers={"accept": "*/*"}).status_code == 401


def test_reads_a_chunked_authjs_cookie(authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"group-{i}" for i in range(500)]), SECRET, PLAIN)
    chunks = authjs.call("chunk", name=PLAIN, value=token)
    assert len(chunks) >= 2
    header = "; ".join(f"{name}={value}" for name, value in reversed(chunks))
    response = make_client().get("/me", headers={"cookie": header})
    assert response.json()["user"] == "user-1"


def test_reads_tokens_of_a_rotated_secret(authjs: AuthJS) -> None:
    old = "old-authjs-secret-" + "o" * 32
    token = authjs.encode(claims(), old, PLAIN)
    client = make_client(secret_key=[SECRET, old])
    assert client.get("/me", headers={"cookie": f"{PLAIN}={token}"}).json()["user"] == "user-1"


def test_custom_role_claim(authjs: AuthJS) -> None:
    token = authjs.encode({"sub": "u2", "userRole": "ORG_ADMIN"}, SECRET, PLAIN)
    client = make_client(role_claim="userRole")
    assert client.get("/me", headers={"cookie": f"{PLAIN}={token}"}).json()["role"] == "ORG_ADMIN"


def test_token_without_role_gets_the_default_role(authjs: AuthJS) -> None:
    token = authjs.encode({"sub": "u3"}, SECRET, PLAIN)
    assert make_client().get("/me", headers={"cookie": f"{PLAIN}={token}"}).json()["role"] == ""
    client = make_client(default_role="USER")
    assert client.get("/me", headers={"cookie": f"{PLAIN}={token}"}).json()["role"] == "USER"


def test_wrong_secret_or_salt_is_anonymous_with_a_clear_log_line(
        authjs: AuthJS, caplog: pytest.LogCaptureFixture) -> None:
    client = make_client()
    wrong_secret = authjs.encode(claims(), "another-secret-" + "w" * 32, PLAIN)
    wrong_salt = authjs.encode(claims(), SECRET, "next-auth.session-token")
    with caplog.at_level(logging.DEBUG, logger="asgi_jwt_session"):
        for token in (wrong_secret, wrong_salt):
            response = client.get("/me", headers={"cookie": f"{PLAIN}={token}"})
            assert response.status_code == 200
            assert response.json() == {"user": None}
            assert response.headers.get_list("set-cookie") == []  # not ours to delete
    text = caplog.text
    assert "secret" in text and "salt" in text


def test_refresh_writes_a_cookie_authjs_accepts(authjs: AuthJS) -> None:
    token = authjs.encode(claims("USER"), SECRET, PLAIN)
    client = make_client(authjs_write=True)
    response = client.get("/promote", headers={"cookie": f"{PLAIN}={token}"})
    lines = response.headers.get_list("set-cookie")
    assert len(lines) == 1 and lines[0].startswith(f"{PLAIN}=")
    written = lines[0].split(";")[0].split("=", 1)[1]
    decoded = authjs.decode(written, SECRET, PLAIN)
    assert decoded["sub"] == "user-1" and decoded["role"] == "ADMIN"
    assert decoded["email"] == "ada@example.com" and decoded["exp"] > time.time()


def test_written_big_cookie_is_chunked_the_authjs_way(authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"g{i}" for i in range(900)]), SECRET, SECURE)
    client = make_client("https://testserver", authjs_write=True)
    response = client.get("/promote", headers={"cookie": f"{SECURE}={token}"})
    lines = response.headers.get_list("set-cookie")
    pairs = dict(line.split(";")[0].split("=", 1) for line in lines if "Max-Age=0" not in line)
    assert len(pairs) >= 2 and all(len(value) <= 3936 for value in pairs.values())
    joined = authjs.call("join", name=SECURE, cookies=pairs)
    assert authjs.decode(joined, SECRET, SECURE)["role"] == "ADMIN"


def test_sign_out_expires_every_chunk_when_writing(authjs: AuthJS) -> None:
    token = authjs.encode(claims(groups=[f"g{i}" for i in range(900)]), SECRET, PLAIN)
    chunks = authjs.call("chunk", name=PLAIN, value=token)
    header = "; ".join(f"{name}={value}" for name, value in chunks)
    response = make_client(authjs_write=True).get("/signout", headers={"cookie": header})
    expired = sorted(line.split("=", 1)[0] for line in response.headers.get_list("set-cookie")
                     if "Max-Age=0" in line)
    assert expired == sorted(name for name, _ in chunks)


def test_authjs_format_needs_text_secrets() -> None:
    with pytest.raises((TypeError, ValueError)):
        make_client(secret_key=b"bytes are not an AUTH_SECRET" * 2).get("/me")


def test_writes_back_under_the_name_it_read(authjs: AuthJS) -> None:
    # Behind a TLS proxy without proxy headers the app sees http, but the browser holds
    # the __Secure- cookie: sign-out must expire that one, with Secure.
    token = authjs.encode(claims(), SECRET, SECURE)
    client = make_client(authjs_write=True)
    response = client.get("/signout", headers={"cookie": f"{SECURE}={token}"})
    (line,) = response.headers.get_list("set-cookie")
    assert line.startswith(f"{SECURE}=;") and "Secure" in line and "Max-Age=0" in line


def test_oversized_authjs_cookie_is_refused_before_decoding() -> None:
    client = make_client()
    response = client.get("/me", headers={"cookie": f"{PLAIN}={'A' * 20000}"})
    assert response.status_code == 200 and response.json() == {"user": None}
