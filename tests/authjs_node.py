"""The real Auth.js (``@auth/core``) in a node process, for cross-checking tokens.

``install`` puts tests/js/package.json (which pins ``@auth/core``) and the helper scripts
in a directory and runs ``npm install`` there; ``AuthJS`` is one long-lived node process
running authjs.mjs, one JSON request per line, ``AuthJSFlow`` one running authjs_flow.mjs
(the real ``Auth()`` handler). The ``authjs`` fixture (conftest) does both once per run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.node_helper import NodeError, NodeHelper, npm_install

JS = Path(__file__).resolve().parent / "js"


class AuthJSError(NodeError):
    """Auth.js threw; the message is its error name and message."""


def install(workdir: Path) -> Path:
    """``npm install`` the pinned @auth/core into ``workdir``, with the helper scripts."""
    return npm_install(workdir, JS, ("package.json", "authjs.mjs", "authjs_flow.mjs"),
                       command="install", timeout=180, needed_by="Auth.js cross-checks")


class AuthJS(NodeHelper):
    """One node process running authjs.mjs; ``call`` is one request/reply."""

    script = "authjs.mjs"
    error = AuthJSError

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


class AuthJSFlow(AuthJS):
    """@auth/core's ``Auth()`` handler with a Credentials provider (tests/js/authjs_flow.mjs),
    the role set by its jwt callback as in examples/nextjs_fastapi/auth.ts."""

    script = "authjs_flow.mjs"

    def sign_in(self, user: str = "alice", role: str = "USER", **options: Any) -> dict[str, str]:
        """The cookies a browser holds after signing in (session chunks included)."""
        jar: dict[str, str] = self.call("signIn", user=user, role=role, **options)
        return jar

    def session(self, cookies: dict[str, str], **options: Any) -> dict[str, Any]:
        """``GET /auth/session`` with these cookies: status, body and Set-Cookie lines."""
        result: dict[str, Any] = self.call("session", cookies=cookies, **options)
        return result
