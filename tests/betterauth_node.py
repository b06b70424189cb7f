"""The real Better Auth (``better-auth``) in a node process, for the Better Auth tests.

``install`` copies tests/js/betterauth (package.json, its package-lock.json and
betterauth.mjs) to a directory and runs ``npm ci`` there; ``BetterAuth`` is one long-lived
node process running betterauth.mjs, one JSON request a line. The ``betterauth`` fixture
(conftest) does both once per run.
"""

from __future__ import annotations

import contextlib
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from tests.node_helper import NodeError, NodeHelper, npm_install

JS = Path(__file__).resolve().parent / "js" / "betterauth"
SECRET = "tests-better-auth-secret-0123456789abcdef"
PASSWORD = "correct-horse-battery"


class BetterAuthError(NodeError):
    """Better Auth threw; the message is its error name and message."""


def install(workdir: Path) -> Path:
    """``npm ci`` the locked better-auth into ``workdir``, with the helper script."""
    return npm_install(workdir, JS, ("package.json", "package-lock.json", "betterauth.mjs"),
                       command="ci", timeout=300, needed_by="Better Auth tests")


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


class BetterAuth(NodeHelper):
    """One node process running betterauth.mjs; ``call`` is one request/reply."""

    script = "betterauth.mjs"  # in a workdir with node_modules holding better-auth and pg
    error = BetterAuthError

    def __init__(self, node: str, workdir: Path) -> None:
        super().__init__(node, workdir)
        self.apps = 0

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
        super().close()


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
