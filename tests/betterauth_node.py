"""The real Better Auth (``better-auth``) in a node process, for the Better Auth tests.

``install`` copies tests/js/betterauth (package.json, its package-lock.json and
betterauth.mjs) to a directory and runs ``npm ci`` there; ``BetterAuth`` is one long-lived
node process running betterauth.mjs, one JSON request a line. The ``betterauth`` fixture
(conftest) does both once per run.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

JS = Path(__file__).resolve().parent / "js" / "betterauth"
SECRET = "tests-better-auth-secret-0123456789abcdef"
PASSWORD = "correct-horse-battery"


class BetterAuthUnavailable(RuntimeError):
    """npm is missing, or could not install better-auth."""


class BetterAuthError(Exception):
    """Better Auth threw; the message is its error name and message."""


def install(workdir: Path) -> Path:
    """``npm ci`` the locked better-auth into ``workdir``, with the helper script."""
    npm = shutil.which("npm")
    if npm is None:
        raise BetterAuthUnavailable("Better Auth tests need npm on PATH")
    for name in ("package.json", "package-lock.json", "betterauth.mjs"):
        shutil.copy(JS / name, workdir / name)
    try:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=workdir, check=True, capture_output=True, text=True, timeout=300)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = (getattr(exc, "stderr", "") or "").strip()[-500:]
        raise BetterAuthUnavailable(f"npm ci (tests/js/betterauth) failed: {detail}") from exc
    return workdir


def cookies_of(set_cookie: list[str]) -> dict[str, str]:
    """The cookies a browser keeps from these Set-Cookie lines (Max-Age=0 removes)."""
    jar: dict[str, str] = {}
    for line in set_cookie:
        parsed = SimpleCookie()
        parsed.load(line)
        for name, morsel in parsed.items():
            if morsel["max-age"] == "0" or not morsel.value:
                jar.pop(name, None)
            else:
                jar[name] = morsel.value
    return jar


class BetterAuth:
    """One node process running betterauth.mjs; ``call`` is one request/reply."""

    def __init__(self, node: str, workdir: Path) -> None:
        self.node, self.workdir = node, workdir  # node_modules with better-auth and pg
        self.proc = subprocess.Popen([node, "betterauth.mjs"], cwd=workdir, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.apps = 0

    def call(self, op: str, **req: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **req}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"node helper exited with {self.proc.wait()}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise BetterAuthError(reply["error"])
        return reply["result"]

    def app(self, **config: Any) -> App:
        """A new Better Auth instance (``secret`` defaults to :data:`SECRET`)."""
        self.apps += 1
        name = f"app{self.apps}"
        config.setdefault("secret", SECRET)
        self.call("app", name=name, config=config)
        return App(self, name)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing: the process may be gone
            self.call("close")
        if self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class App:
    """One Better Auth instance in the node process."""

    def __init__(self, helper: BetterAuth, name: str) -> None:
        self.helper, self.name = helper, name

    def request(self, method: str, path: str, cookies: dict[str, str] | None = None,
                body: Any = None) -> dict[str, Any]:
        reply: dict[str, Any] = self.helper.call("call", name=self.name, method=method,
                                                 path=path, cookies=cookies, body=body)
        return reply

    def sign_up(self, email: str, name: str = "Alice") -> tuple[str, dict[str, str]]:
        """Sign a new user up (signed in at once): ``(user id, cookies)``."""
        reply = self.request("POST", "/sign-up/email",
                             body={"email": email, "password": PASSWORD, "name": name})
        assert reply["status"] == 200, reply
        return reply["body"]["user"]["id"], cookies_of(reply["setCookie"])

    def sign_in(self, email: str) -> dict[str, str]:
        reply = self.request("POST", "/sign-in/email",
                             body={"email": email, "password": PASSWORD})
        assert reply["status"] == 200, reply
        return cookies_of(reply["setCookie"])

    def get_session(self, cookies: dict[str, str]) -> Any:
        return self.request("GET", "/get-session", cookies)["body"]

    def sign_out(self, cookies: dict[str, str]) -> None:
        reply = self.request("POST", "/sign-out", cookies, body={})
        assert reply["status"] == 200, reply

    def update_user(self, user_id: str, **data: Any) -> None:
        self.helper.call("updateUser", name=self.name, userId=user_id, data=data)

    def set_role(self, admin_cookies: dict[str, str], user_id: str, role: str) -> None:
        self.helper.call("setRole", name=self.name, cookies=admin_cookies, userId=user_id,
                         role=role)

    def ban(self, admin_cookies: dict[str, str], user_id: str) -> None:
        self.helper.call("banUser", name=self.name, cookies=admin_cookies, userId=user_id)
