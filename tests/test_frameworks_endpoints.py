"""``session_app()``: the session endpoints as a plain ASGI app, mounted the ways routers
mount one (prefix stripped or not, root_path set or not, a slash added)."""

from __future__ import annotations

import pytest
from starlette.types import Receive, Scope, Send

from asgi_jwt_session import JWTSessionMiddleware
from asgi_jwt_session.endpoints import session_app
from tests.asgi import asgi_get
from tests.conftest import SECRET

pytestmark = pytest.mark.anyio

ENDPOINTS = session_app()


@pytest.mark.parametrize(("path", "root_path"), [
    ("/auth/session", "/auth"),   # Starlette: the full path, root_path set
    ("/session", "/auth"),        # the prefix stripped, root_path set (the ASGI spec)
    ("/session/", ""),            # Litestar: the prefix stripped and a slash added
    ("/session", ""),             # stripped, nothing else
])
async def test_mounted_any_way(path: str, root_path: str) -> None:
    app = JWTSessionMiddleware(ENDPOINTS, secret_key=SECRET)
    response = await asgi_get(app, path, root_path=root_path)
    assert response.status == 200
    body = response.json()
    assert body["session"] is None and body["csrfToken"]


async def test_unknown_path_and_method() -> None:
    app = JWTSessionMiddleware(ENDPOINTS, secret_key=SECRET)
    assert (await asgi_get(app, "/nothing")).status == 404
    assert (await asgi_get(app, "/signout")).status == 405


async def test_signout_needs_csrf() -> None:
    async def post(scope: Scope, receive: Receive, send: Send) -> None:
        await ENDPOINTS({**scope, "method": "POST"}, receive, send)

    app = JWTSessionMiddleware(post, secret_key=SECRET)
    assert (await asgi_get(app, "/signout/")).status == 403
