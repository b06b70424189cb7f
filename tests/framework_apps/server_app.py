"""The server matrix's app (tests/test_frameworks_servers.py): Starlette under the
middleware, with routes for sign-in and out, a chunked session beside a cookie of the
app's own, a streamed response, and the client's address (keep-alive)."""

from __future__ import annotations

import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from asgi_jwt_session import JWTSessionMiddleware, auth, login, logout
from tests.framework_apps import SECRET

BLOB = secrets.token_urlsafe(5000)  # a ~9 KB token: three cookies


async def sign_in(request: Request) -> JSONResponse:
    login(request, request.query_params["user"], "USER")
    return JSONResponse({"user": request.query_params["user"]})


async def me(request: Request) -> JSONResponse:
    found = auth(request)
    return JSONResponse({"user": found.user.id if found else None,
                         "blob": len(request.session.get("blob", "")),
                         "client": request.client.port if request.client else None})


async def sign_out(request: Request) -> JSONResponse:
    logout(request)
    return JSONResponse({"user": None})


async def big(request: Request) -> Response:
    request.session["blob"] = BLOB
    response = JSONResponse({"size": len(BLOB)})
    response.set_cookie("theme", "dark")  # the app's own cookie beside the chunks
    return response


async def stream(request: Request) -> StreamingResponse:
    request.session["streamed"] = True  # written as the response starts, before the body

    async def chunks() -> object:
        for index in range(5):
            yield f"chunk {index}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def socket(websocket: WebSocket) -> None:
    websocket.session["socket"] = True  # a cookie to set with websocket.accept
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


app = Starlette(
    routes=[Route("/login", sign_in), Route("/me", me, methods=["GET", "HEAD"]),
            Route("/logout", sign_out, methods=["POST"]), Route("/big", big, methods=["POST"]),
            Route("/stream", stream), WebSocketRoute("/ws", socket)],
    middleware=[Middleware(JWTSessionMiddleware, secret_key=SECRET)],
)
