"""What other frameworks do to the middleware: build it with ``app=``, send header
pairs as lists, replace ``scope["session"]`` with an object of their own."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware, Session
from tests.asgi import asgi_get
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio


async def sign_in_app(scope: Scope, receive: Receive, send: Send) -> None:
    session: Session = scope["session"]
    session.login("alice", "USER")
    session["cart"] = [1]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def signed_in_cookie() -> bytes:
    signed_in = await asgi_get(JWTSessionMiddleware(sign_in_app, secret_key=SECRET))
    (line,) = signed_in.set_cookies
    return line.split(";")[0].encode()


async def session_read_from(set_cookie: str) -> Session:
    """The session an app is handed on a request with the cookie of this Set-Cookie line."""
    seen: list[Session] = []

    async def read(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["session"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    await asgi_get(JWTSessionMiddleware(read, secret_key=SECRET),
                   headers=[(b"cookie", set_cookie.split(";")[0].encode())])
    return seen[0]


def replacing_app(replacement: object) -> Any:
    """An app that puts ``replacement`` in ``scope["session"]`` and answers with what
    the scope held before (Litestar's ``set_session()``/``clear_session()``)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        before = scope["session"]
        scope["session"] = replacement
        body = f"{before.user.id if before.user else None}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def test_app_is_accepted_as_a_keyword() -> None:
    # Litestar's DefineMiddleware builds middleware as cls(app=..., **options).
    middleware = JWTSessionMiddleware(app=sign_in_app, secret_key=SECRET)
    assert (await asgi_get(middleware)).status == 200


async def test_header_pairs_given_as_lists() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"]["seen"] = True
        headers = [[b"vary", b"Accept-Encoding"], [b"content-type", b"text/plain"]]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    response = await asgi_get(JWTSessionMiddleware(app, secret_key=SECRET))
    assert response.status == 200
    assert response.header("vary") == ["Accept-Encoding, Cookie"]
    assert len(response.set_cookies) == 1


@pytest.mark.parametrize("replacement", [None, {}, object()], ids=["none", "empty", "marker"])
async def test_a_replaced_empty_session_signs_out(replacement: object) -> None:
    cookie = await signed_in_cookie()
    app = JWTSessionMiddleware(replacing_app(replacement), secret_key=SECRET)
    response = await asgi_get(app, headers=[(b"cookie", cookie)])
    assert response.body == b"alice"  # it was signed in as the app ran
    (line,) = response.set_cookies
    assert line.startswith("session=;") and "Max-Age=0" in line
    assert "Cookie" in response.header("vary")[0]


async def test_a_replaced_mapping_is_the_new_session_data() -> None:
    cookie = await signed_in_cookie()
    app = JWTSessionMiddleware(replacing_app({"theme": "dark"}), secret_key=SECRET)
    response = await asgi_get(app, headers=[(b"cookie", cookie)])
    (line,) = response.set_cookies
    after = await asgi_get(JWTSessionMiddleware(replacing_app(None), secret_key=SECRET),
                           headers=[(b"cookie", line.split(";")[0].encode())])
    assert after.body == b"None"  # the replacement holds nobody signed in
    session = await session_read_from(line)
    assert dict(session) == {"theme": "dark"} and session.user is None


async def test_a_replaced_session_object_is_written() -> None:
    fresh = Session()
    fresh.login("bob", "ADMIN")
    fresh.mark_accessed()
    fresh.modified = False  # even when the replacement does not say it changed
    app = JWTSessionMiddleware(replacing_app(fresh), secret_key=SECRET)
    response = await asgi_get(app)
    (line,) = response.set_cookies
    session = await session_read_from(line)
    assert session.user is not None and session.user.id == "bob"


async def test_the_same_session_object_costs_no_write() -> None:
    cookie = await signed_in_cookie()

    async def same(scope: Scope, receive: Receive, send: Send) -> None:
        scope["session"] = scope["session"]  # put back as it was: not a change
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await asgi_get(JWTSessionMiddleware(same, secret_key=SECRET),
                              headers=[(b"cookie", cookie)])
    assert response.set_cookies == [] and response.header("vary") == []
