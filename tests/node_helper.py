"""What the node test helpers (tests/authjs_node.py, tests/betterauth_node.py) share:
``npm_install`` puts a locked or pinned package.json and the helper scripts in a
directory and installs them there; ``NodeHelper`` is one long-lived node process running
one script, one JSON request a line and one JSON reply a line."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class NodeUnavailable(RuntimeError):
    """npm is missing, or could not install the packages."""


class NodeError(Exception):
    """The script threw; the message is its error name and message."""


def npm_install(workdir: Path, source: Path, names: Iterable[str], *, command: str,
                timeout: float, needed_by: str) -> Path:
    """Copy ``names`` from ``source`` to ``workdir`` and run ``npm command`` there
    (``install`` or ``ci``); :class:`NodeUnavailable` when npm is missing or fails."""
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable(f"{needed_by} need npm on PATH")
    for name in names:
        shutil.copy(source / name, workdir / name)
    try:
        subprocess.run([npm, command, "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=workdir, check=True, capture_output=True, text=True,
                       timeout=timeout)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip()[-500:]
        where = source.relative_to(Path(__file__).resolve().parent.parent)
        raise NodeUnavailable(f"npm {command} ({where}) failed: {detail}") from exc
    return workdir


class NodeHelper:
    """One node process running ``script`` in ``workdir``; ``call`` is one request/reply."""

    script: str
    error: type[NodeError] = NodeError

    def __init__(self, node: str, workdir: Path) -> None:
        self.node, self.workdir = node, workdir
        self.proc = subprocess.Popen([node, self.script], cwd=workdir, text=True,
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
            raise self.error(reply["error"])
        return reply["result"]

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):  # the process may be gone
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
