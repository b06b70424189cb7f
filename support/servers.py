"""Throwaway PostgreSQL and Redis servers for the tests and the benchmarks.

Each server lives in a temp dir, listens on loopback only and is gone when stopped.
PostgreSQL refuses to run as root, so under root it runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol


class Server(Protocol):
    """What the benchmarks need of a throwaway server."""

    port: int

    @property
    def url(self) -> str: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def version(self) -> str | None: ...


class ServerUnavailable(RuntimeError):
    """The server's binaries are missing or it would not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 10.0,
                  process: subprocess.Popen[bytes] | None = None) -> None:
    """Return once something listens on ``port``; raise :class:`ServerUnavailable` after
    ``timeout`` seconds, or as soon as ``process`` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if process is not None and process.poll() is not None:
                raise ServerUnavailable(f"the server exited with {process.returncode} "
                                        f"before it listened on 127.0.0.1:{port}") from None
            time.sleep(0.05)
    raise ServerUnavailable(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def serve(command: Callable[[int], list[str]], *, timeout: float = 20.0, tries: int = 3,
          cwd: str | Path | None = None, env: dict[str, str] | None = None,
          ) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``command(port)`` on a free port and wait until it listens: the process and
    its port. A server that exits first is started again on another port (the port can
    be taken between :func:`free_port` and the server's bind); after ``tries`` starts,
    :class:`ServerUnavailable` carries the end of its output. ``env``: the process's
    environment (None: this one's)."""
    for attempt in range(tries):
        port = free_port()
        with tempfile.TemporaryFile() as output:
            process = subprocess.Popen(command(port), cwd=cwd, env=env, stdout=output,
                                       stderr=subprocess.STDOUT)
            try:
                wait_for_port(port, timeout, process)
                return process, port
            except ServerUnavailable as exc:
                exited = process.poll() is not None
                process.terminate()
                process.wait(10)
                output.seek(0)
                said = output.read().decode(errors="replace").strip()[-2000:]
                if attempt == tries - 1 or not exited:
                    raise ServerUnavailable(f"{exc}; it said:\n{said}") from None
    raise AssertionError("unreachable")


def first_line(command: list[str]) -> str | None:
    """The first line a command prints, or None when it is missing or fails."""
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        return None
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (result.stdout or result.stderr).strip()
    return text.splitlines()[0] if text else None


def postgres_bindir() -> str | None:
    """Where initdb and pg_ctl are: $PG_BINDIR, Debian's layout, or $PATH."""
    if os.environ.get("PG_BINDIR"):
        return os.environ["PG_BINDIR"]
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return str(Path(found[-1]).parent)
    pg_ctl = shutil.which("pg_ctl")
    return str(Path(pg_ctl).parent) if pg_ctl else None


class PostgresServer:
    """A PostgreSQL cluster in a temp dir: ``start()``, ``stop()``, ``dsn``."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise ServerUnavailable("PostgreSQL binaries (initdb, pg_ctl) not found")
        self.bindir = Path(bindir)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ajs-pg-"))
        self.data = self.root / "data"
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            self.prefix = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--no-instructions")
        self.running = False

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def url(self) -> str:
        return self.dsn

    def version(self) -> str | None:
        """``PostgreSQL 15.18 (...)``, from the server binary."""
        line = first_line([str(self.bindir / "postgres"), "--version"])
        return line.replace("postgres (PostgreSQL)", "PostgreSQL") if line else None

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.prefix, str(self.bindir / tool), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            raise ServerUnavailable(f"{tool} failed: {result.stderr.strip()[-800:]}")

    def start(self) -> None:
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -F "
            "-c max_connections=200 -c shared_buffers=64MB -c synchronous_commit=off"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"),
                  "-o", options, "-w", "-t", "30", "start")
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer:
    """A redis-server on loopback with no persistence."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server not found")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port)
        except ServerUnavailable:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def close(self) -> None:
        self.stop()

    def version(self) -> str | None:
        """``Redis 7.0.15``, from the server binary."""
        line = first_line([self.binary, "--version"])
        if line and "v=" in line:
            return "Redis " + line.split("v=")[1].split()[0]
        return line

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
