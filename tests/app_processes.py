"""An app of the test suite's, served by its own uvicorn process on loopback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.servers import serve

ROOT = Path(__file__).resolve().parent.parent


class App:
    """A running app process: its URL and its ``/stats``."""

    def __init__(self, url: str, process: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.process = process

    def stats(self) -> dict[str, object]:
        response = httpx.get(f"{self.url}/stats")
        response.raise_for_status()
        data: dict[str, object] = response.json()
        return data

    def queries(self) -> int:
        return int(self.stats()["queries"])  # type: ignore[call-overload]


def start_app(module: str, env: dict[str, str]) -> App:
    """Serve ``module:app`` and wait until its version feed listens."""
    process, port = serve(lambda port: [sys.executable, "-m", "uvicorn", f"{module}:app",
                                        "--host", "127.0.0.1", "--port", str(port),
                                        "--log-level", "warning"], cwd=ROOT, env=env)
    try:
        app = App(f"http://127.0.0.1:{port}", process)
        deadline = time.monotonic() + 10
        while not app.stats()["listening"]:
            assert time.monotonic() < deadline, "the version feed did not connect"
            time.sleep(0.02)
    except BaseException:
        process.terminate()
        process.wait(10)
        raise
    return app
