"""One uvicorn worker for the end-to-end benchmark.

``BENCH_STRATEGY=jwt-warm BENCH_CONFIG='{...}' python -m benchmarks.serve --port 8000``

``--server`` picks the server: ``uvicorn-h11`` (the default), ``uvicorn-httptools``, or
``granian`` (its ASGI interface and asyncio loop; ``--workers N`` are granian's own
worker processes, and one such process serves the port).

N workers are N of these processes on the same port (``SO_REUSEPORT``: the kernel
spreads connections over them). Not ``uvicorn --workers``: its shared socket is created
with protocol 0, so asyncio never sets ``TCP_NODELAY`` on the accepted connections and
every keep-alive response waits ~40 ms for a delayed ACK (measured here: 720 req/s with 2
workers against 10,000 with 1). The socket here is created as IPPROTO_TCP, like the one
``uvicorn --port`` makes for a single worker. Prints ``ready`` once the app started.
"""

from __future__ import annotations

import argparse
import os
import socket

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from benchmarks.app import BenchConfig
from benchmarks.strategies import by_name


def app_from_env() -> ASGIApp:
    """The app of ``BENCH_STRATEGY``, configured by ``BENCH_CONFIG`` (JSON)."""
    config = BenchConfig.from_json(os.environ["BENCH_CONFIG"])
    return by_name(os.environ["BENCH_STRATEGY"]).build(config).app


SERVERS = ("uvicorn-h11", "uvicorn-httptools", "granian")


class ReadyOnStartup:
    """Prints ``ready`` once the app's lifespan startup completed (granian's workers)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            return await self.app(scope, receive, send)

        async def send_ready(message: Message) -> None:
            await send(message)
            if message["type"] == "lifespan.startup.complete":
                print("ready", flush=True)

        await self.app(scope, receive, send_ready)


def granian_app() -> ASGIApp:
    """The factory granian's workers call."""
    return ReadyOnStartup(app_from_env())


def serve_granian(port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops

    Granian("benchmarks.serve:granian_app", address="127.0.0.1", port=port,
            interface=Interfaces.ASGI, workers=workers, loop=Loops.asyncio, factory=True,
            log_enabled=False, backlog=2048).serve()


class Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            print("ready", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--server", choices=SERVERS, default="uvicorn-h11")
    parser.add_argument("--workers", type=int, default=1, help="granian's workers")
    args = parser.parse_args()
    if args.server == "granian":
        serve_granian(args.port, args.workers)
        return
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    http = "httptools" if args.server == "uvicorn-httptools" else "h11"
    config = uvicorn.Config(app_from_env(), loop="asyncio", http=http, lifespan="on",
                            access_log=False, log_level="warning")
    Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
