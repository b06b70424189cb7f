"""Inside uvicorn, without sockets: what a session costs per request in the server.

Each strategy's app is served by uvicorn's own HTTP/1.1 protocol (``H11Protocol``, as
``--http h11`` runs it: h11 parsing, the scope, the ASGI cycle, the ``date``/``server``
headers, h11 writing the response) over an in-memory transport: one keep-alive
connection per strategy, the raw request bytes a browser sends fed to
``data_received``, the time taken until the request's task has written the whole
response. No kernel, no load generator: what is left is the server's and the app's
own Python. Measured twice: the strategies taking turns request by request (order
rotated), as in the in-process harness, and in batches of ``BATCH`` requests, as a
server running one app serves them (its code stays in the CPU caches). The cost is
each one's time minus the baseline's from the same pass; in batches, the median cost is
the median over rounds of each batch's median minus the baseline's batch median of
that round, so the machine's drift between rounds cancels out.

``skeleton`` is a bare ASGI callable answering the same bytes: uvicorn + h11 alone.
The baseline adds Starlette's routing and the route. Their times bound the end-to-end
targets: for a session to keep ``r`` of the baseline's req/s it may add at most
``baseline time x (1/r - 1)`` per request. ``floor`` is the baseline behind the least a
cookie session middleware does whatever it reads: a pass-through ASGI middleware that
wraps ``send`` and marks the response ``Vary: Cookie`` (the response depends on the
cookie). Its cost is what no session middleware can go under on this server.

    python -m benchmarks.bench_server [--requests N] [--users N] [--json PATH | --publish]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import secrets
import tempfile
import time
from collections.abc import Sequence
from email.utils import formatdate
from typing import Any

import uvicorn
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from benchmarks import inprocess, output
from benchmarks.app import FIXED_USER, BenchConfig, Setup, make_app, temp_sqlite_path
from benchmarks.inprocess import BenchApp, Stream
from benchmarks.prepare import Prepared, prepare, stream_for
from benchmarks.strategies import BASELINE, STRATEGIES, Strategy, read_fixed

SKELETON = "skeleton"
FLOOR = "floor"
BATCH = 100  # requests per strategy in a row, for the "one app per server" pass
PEER = ("127.0.0.1", 50000)
LOCAL = ("127.0.0.1", 8000)


class MemoryTransport(asyncio.Transport):
    """What uvicorn's protocol writes to, kept in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[bytes] = []
        self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": PEER, "sockname": LOCAL}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.chunks.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None


class Connection:
    """One keep-alive HTTP/1.1 connection into uvicorn's h11 protocol for one app."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop) -> None:
        config = uvicorn.Config(app, http="h11", loop="asyncio", lifespan="off",
                                access_log=False, log_level="warning")
        config.load()
        self.state = ServerState()
        self.state.default_headers = [(b"date", formatdate(usegmt=True).encode()),
                                      *config.encoded_headers]
        self.protocol = H11Protocol(config, self.state, {}, _loop=loop)
        self.transport = MemoryTransport()
        self.protocol.connection_made(self.transport)

    async def request(self, raw: bytes) -> int:
        """Feed one request; return once its response is written (ns taken)."""
        chunks = self.transport.chunks
        chunks.clear()
        t0 = time.perf_counter_ns()
        self.protocol.data_received(raw)
        for task in [t for t in self.state.tasks if not t.done()]:  # the one just started
            await task
        return time.perf_counter_ns() - t0

    def response(self) -> bytes:
        return b"".join(self.transport.chunks)

    def close(self) -> None:
        self.protocol.connection_lost(None)


def raw_request(scope: Scope) -> bytes:
    """The bytes a client sends for ``scope`` (HTTP/1.1, keep-alive)."""
    lines = [f"{scope['method']} {scope['path']} HTTP/1.1".encode()]
    lines += [name + b": " + value for name, value in scope["headers"]]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def skeleton(scope: Scope, receive: Receive, send: Send) -> None:
    """uvicorn + h11 alone: the baseline's response without Starlette."""
    body = " ".join(FIXED_USER).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()),
                            (b"content-type", b"text/plain; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body})


class VaryOnly:
    """The floor: a pass-through middleware that adds ``Vary: Cookie`` to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_vary(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
            await send(message)

        await self.app(scope, receive, send_vary)


async def serve_streams(streams: dict[str, Stream], iterations: int,
                        batches: Sequence[int] = (1,)) -> list[dict[str, list[int]]]:
    """Connect each app, warm up through uvicorn (each response checked), then for each
    of ``batches``: ``iterations`` timed requests per stream, ``batch`` in a row per
    stream before the next one's turn, order rotated each round."""
    loop = asyncio.get_running_loop()
    names = list(streams)
    connections: dict[str, Connection] = {}
    raw: dict[str, list[bytes]] = {}
    connected: list[BenchApp] = []
    try:
        for name, stream in streams.items():
            await stream.app.connect()
            connected.append(stream.app)
            connections[name] = Connection(stream.app.app, loop)
            raw[name] = [raw_request(scope) for scope in stream.scopes]
            for scope, expected in zip(stream.warmup, stream.expected, strict=True):
                await connections[name].request(raw_request(scope))
                answer = connections[name].response()
                if not answer.startswith(b"HTTP/1.1 200 ") or not answer.endswith(expected):
                    raise RuntimeError(f"{name} inside uvicorn: expected 200 {expected!r}, "
                                       f"got {answer[:200]!r}")
        passes = []
        position = dict.fromkeys(names, 0)
        for batch in batches:
            samples: dict[str, list[int]] = {name: [] for name in names}
            gc.collect()
            for round_index in range(-(-iterations // batch)):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    requests, out, connection = raw[name], samples[name], connections[name]
                    for _ in range(min(batch, iterations - len(out))):
                        out.append(await connection.request(
                            requests[position[name] % len(requests)]))
                        position[name] += 1
            passes.append(samples)
        return passes
    finally:
        for connection in connections.values():
            connection.close()
        for bench_app in reversed(connected):
            await bench_app.disconnect()


def in_server(strategy: Strategy) -> bool:
    """Strategies measured here: those that only compute (no server, no I/O wait)."""
    return not strategy.waits and not strategy.all_services


def measure(strategies: Sequence[Strategy], config: BenchConfig, prepared: Prepared,
            iterations: int, warmup: int, fresh_every: int) -> dict[str, Any]:
    """Per strategy (and the skeleton): request time inside uvicorn and the cost over
    the baseline (µs), batched (``strategies``) and interleaved (``interleaved``); the
    budgets the end-to-end targets leave, from the batched baseline."""
    chosen = [s for s in strategies if in_server(s) and not s.baseline]
    streams = {s.name: stream_for(s, config, prepared, warmup, iterations, fresh_every)
               for s in [BASELINE, *chosen]}
    base = streams[BASELINE.name]
    streams[SKELETON] = Stream(BenchApp(SKELETON, skeleton), base.warmup[:50],
                               base.expected[:50], base.scopes)
    floor = make_app(FLOOR, Setup([Middleware(VaryOnly)]), read_fixed)
    streams[FLOOR] = Stream(floor, base.warmup[:50], base.expected[:50], base.scopes)
    by_batch, one_by_one = asyncio.run(serve_streams(streams, iterations, (BATCH, 1)))
    batched = inprocess.session_costs(by_batch, BASELINE.name, BATCH)
    interleaved = inprocess.session_costs(one_by_one, BASELINE.name)
    base_us = batched[BASELINE.name]["request_us"]["median"]
    return {
        "strategies": batched,
        "interleaved": interleaved,
        "batch": BATCH,
        "skeleton_us": batched[SKELETON]["request_us"],
        "floor_cost_us": batched[FLOOR]["session_cost_us"],
        "starlette_route_us": base_us - batched[SKELETON]["request_us"]["median"],
        "budget_us": {f"{r:g}": base_us * (1 / r - 1) for r in (0.95, 0.92, 0.9)},
        "iterations": iterations,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--fresh-every", type=int, default=10)
    output.add_json_arguments(parser, "server.json")
    args = parser.parse_args()
    chosen = [s for s in STRATEGIES if in_server(s) and s.missing() is None]
    with tempfile.TemporaryDirectory(prefix="ajs-bench-") as workdir:
        config = BenchConfig(secret=secrets.token_urlsafe(32), data_dir=workdir,
                             cache_size=max(4096, 2 * args.users),
                             sqlite_path=temp_sqlite_path())
        prepared = asyncio.run(prepare(chosen, config, args.users,
                                       args.requests // args.fresh_every + 2))
        results = measure(chosen, config, prepared, args.requests, 300, args.fresh_every)
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; {args.requests} requests each, {args.users} users")
    print(f"{'':<22}{'batches of ' + str(BATCH):^33}{'interleaved':^33}")
    print(f"{'strategy':<22}" + f"{'request µs':>12}{'cost median':>13}{'mean':>8}" * 2)
    for name, entry in results["strategies"].items():
        cells = ""
        for one in (entry, results["interleaved"][name]):
            request, cost = one["request_us"], one["session_cost_us"]
            cells += f"{request['median']:>12.1f}{cost['median']:>13.1f}{cost['mean']:>8.1f}"
        print(f"{name:<22}{cells}")
    print(f"floor (pass-through + Vary: Cookie): {results['floor_cost_us']['median']:.1f} µs "
          "over the baseline, the least any session middleware adds here")
    budgets = ", ".join(f"{k}x: {v:.1f} µs" for k, v in results["budget_us"].items())
    print(f"a session keeping r of {BASELINE.name}'s req/s may add at most: {budgets}")
    path = output.json_path(args, "server.json")
    output.write_json(results, path)
    print(f"results: {path}")


if __name__ == "__main__":
    main()
