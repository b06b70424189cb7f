"""One request through a raw ASGI app, without a client: for tests that need exact
Cookie header bytes or the raw Set-Cookie lines."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from starlette.types import ASGIApp, Message


async def asgi_get(app: ASGIApp, path: str = "/", headers: Sequence[tuple[bytes, bytes]] = (),
                   **scope: Any) -> tuple[int, list[str], Any]:
    """GET ``path``: the status, the Set-Cookie lines and the JSON body."""
    full_scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "client": ("127.0.0.1", 1234), "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), *headers], **scope,
    }
    requests: Iterator[Message] = iter([{"type": "http.request", "body": b""}])

    async def receive() -> Message:
        return next(requests, {"type": "http.disconnect"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(full_scope, receive, send)  # an exception escaping fails the test right here
    start = sent[0]
    lines = [v.decode("latin-1") for k, v in start["headers"] if k == b"set-cookie"]
    return start["status"], lines, orjson.loads(b"".join(m.get("body", b"") for m in sent[1:]))
