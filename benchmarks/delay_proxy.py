"""A TCP proxy that holds every chunk for a fixed time in each direction: the database
"farther away" without netem (the kernel here has none).

``python -m benchmarks.delay_proxy --target 127.0.0.1:5432 --port 6000 --delay-ms 0.25``
adds 2 x 0.25 ms to every round trip, in order, without limiting bandwidth. It runs in its
own process so its CPU time is not charged to the strategy measured in process.

asyncio's default epoll selector rounds timer waits up to whole milliseconds, which would
turn 0.25 ms into 1 ms; the proxy runs on ``select()`` (microsecond timeouts) instead.
``measure_rtt()`` checks what the proxy really adds.
"""

from __future__ import annotations

import argparse
import asyncio
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from contextlib import suppress

CHUNK = 256 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def pump() -> None:
        while True:
            try:
                data = await reader.read(CHUNK)
            except OSError:
                data = b""
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def deliver() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                with suppress(OSError):
                    writer.close()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(pump(), deliver())
    except OSError:
        writer.close()


async def serve(port: int, target_host: str, target_port: int, delay: float,
                ready: asyncio.Event | None = None) -> None:
    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_w.close()
            return
        for w in (client_w, server_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(client_r, server_w, delay), _pipe(server_r, client_w, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def _tight_timers() -> None:
    """Ask Linux for 1 ns timer slack (default 50 µs) so short waits end on time."""
    with suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK


def run(port: int, target: str, delay_ms: float) -> None:
    host, _, target_port = target.rpartition(":")
    _tight_timers()
    loop = asyncio.SelectorEventLoop(selectors.SelectSelector())
    try:
        loop.run_until_complete(serve(port, host or "127.0.0.1", int(target_port),
                                      delay_ms / 1000))
    finally:
        loop.close()


class DelayProxy:
    """The proxy in a subprocess: ``with DelayProxy(target_port, one_way_ms) as proxy:``."""

    def __init__(self, target_port: int, delay_ms: float, port: int) -> None:
        self.target_port = target_port
        self.delay_ms = delay_ms
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> DelayProxy:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.delay_proxy", "--port", str(self.port),
             "--target", f"127.0.0.1:{self.target_port}", "--delay-ms", str(self.delay_ms)],
            stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            self.__exit__()
            raise RuntimeError("delay proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None


class EchoServer:
    """A line echo server in a thread: the far end for ``measure_rtt``."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while data := conn.recv(4096):
                conn.sendall(data)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def measure_rtt(port: int, count: int = 200) -> float:
    """Median round trip (ms) of a small message to the echo server on ``port``."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        samples = []
        for i in range(count + 20):
            t0 = time.perf_counter()
            sock.sendall(b"ping\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(64)
                if not chunk:
                    raise ConnectionError("connection closed during ping")
                reply += chunk
            if i >= 20:
                samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def calibrate(rtt_ms: float, count: int = 200) -> tuple[float, float]:
    """The one-way delay that adds ``rtt_ms`` per round trip here, and what it measured.

    The proxy's own hop costs ~0.1 ms and timers wake a little late, so the nominal
    ``rtt_ms / 2`` is corrected once from a measurement.
    """
    with EchoServer() as echo:
        direct = measure_rtt(echo.port, count)
        delay = rtt_ms / 2
        best = (delay, 0.0)
        for _ in range(3):
            with DelayProxy(echo.port, delay, _free_port()) as proxy:
                added = measure_rtt(proxy.port, count) - direct
            if abs(added - rtt_ms) < abs(best[1] - rtt_ms):
                best = (delay, added)
            if abs(added - rtt_ms) < 0.03 * rtt_ms:
                break
            delay = max(0.0, delay + (rtt_ms - added) / 2)
        return best


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True, help="host:port")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    args = parser.parse_args()
    with suppress(KeyboardInterrupt):
        run(args.port, args.target, args.delay_ms)


if __name__ == "__main__":
    main()
