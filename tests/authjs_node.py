"""The real Auth.js (``@auth/core``) in a node process, for cross-checking tokens.

``install`` puts tests/js/package.json (which pins ``@auth/core``) and tests/js/authjs.mjs
in a directory and runs ``npm install`` there; ``AuthJS`` is one long-lived node process
running authjs.mjs, one JSON request per line. The ``authjs`` fixture (conftest) does both
once per run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS = Path(__file__).resolve().parent / "js"


class AuthJSUnavailable(RuntimeError):
    """npm is missing, or could not install @auth/core."""


class AuthJSError(Exception):
    """Auth.js threw; the message is its error name and message."""


def install(workdir: Path) -> Path:
    """``npm install`` the pinned @auth/core into ``workdir``, with the helper script."""
    npm = shutil.which("npm")
    if npm is None:
        raise AuthJSUnavailable("Auth.js cross-checks need npm on PATH")
    for name in ("package.json", "authjs.mjs"):
        shutil.copy(JS / name, workdir / name)
    try:
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=workdir, check=True, capture_output=True, text=True, timeout=180)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip()[-500:]
        raise AuthJSUnavailable(f"npm install (tests/js/package.json) failed: {detail}") from exc
    return workdir


class AuthJS:
    """One node process running authjs.mjs; ``call`` is one request/reply."""

    def __init__(self, node: str, workdir: Path) -> None:
        self.proc = subprocess.Popen([node, "authjs.mjs"], cwd=workdir, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, op: str, **req: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node helper exited with {self.proc.wait()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise AuthJSError(reply["error"])
        return reply["result"]

    def encode(self, token: dict[str, Any], secret: str | list[str], salt: str, **kw: Any) -> str:
        return str(self.call("encode", token=token, secret=secret, salt=salt, **kw))

    def decode(self, token: str, secret: str | list[str], salt: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("decode", token=token, secret=secret, salt=salt)
        return result

    def chunk(self, name: str, value: str) -> list[tuple[str, str]]:
        """Auth.js's chunks of a cookie value: ``[(name.0, part), ...]`` or ``[(name, value)]``."""
        return [(n, v) for n, v in self.call("chunk", name=name, value=value)]

    def join(self, name: str, cookies: dict[str, str]) -> str | None:
        """The value Auth.js reads from ``cookies`` (joining the chunks of ``name``)."""
        joined: str | None = self.call("join", name=name, cookies=cookies)
        return joined

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
