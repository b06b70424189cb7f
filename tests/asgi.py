"""One request through an ASGI app with no client in between: for tests that need exact
Cookie header bytes, an exact path or query, the raw Set-Cookie lines, or many requests
at once on the test's own event loop."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [value.decode("latin-1") for k, value in self.headers if k.lower() == key]

    @property
    def set_cookies(self) -> list[str]:
        return self.header("set-cookie")

    def json(self) -> Any:
        return orjson.loads(self.body)


async def asgi_get(app: ASGIApp, path: str = "/", headers: Sequence[tuple[bytes, bytes]] = (),
                   *, query_string: bytes = b"", sent: list[Message] | None = None,
                   **scope: Any) -> Response:
    """GET ``path`` (as the server decoded it) with these raw headers; ``sent`` collects
    the messages the app sent, even when it raises. Extra keywords go in the scope."""
    full_scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": query_string, "client": ("127.0.0.1", 1234),
        "server": ("testserver", 80), "headers": [(b"host", b"testserver"), *headers],
        **scope,
    }
    requests: Iterator[Message] = iter([{"type": "http.request", "body": b""}])

    async def receive() -> Message:
        return next(requests, {"type": "http.disconnect"})

    messages: list[Message] = [] if sent is None else sent

    async def send(message: Message) -> None:
        messages.append(message)

    await app(full_scope, receive, send)  # an exception escaping fails the test right here
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return Response(start["status"], list(start["headers"]), body)
