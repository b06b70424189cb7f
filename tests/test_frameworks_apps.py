"""The same contract for every framework's app, each served by uvicorn on loopback:
sign-in, read, guards (401 / 303 to the login page / 403), the session endpoints with
CSRF, sign-out (the endpoint's and the framework's own), a bogus cookie, a chunked
session, and a websocket where the framework has them."""

from __future__ import annotations

import importlib
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from urllib.parse import unquote

import anyio
import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from support.servers import serve
from tests.app_processes import ROOT
from tests.framework_apps import SECRET

FRAMEWORKS = ["litestar", "quart", "django", "falcon", "blacksheep"]
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html"}


class Served:
    def __init__(self, name: str, url: str, module: ModuleType) -> None:
        self.name = name
        self.url = url
        self.cookie: str = module.COOKIE
        self.csrf_cookie: str = module.CSRF_COOKIE
        self.websockets: bool = getattr(module, "WEBSOCKETS", True)
        # The framework's own session cookie, written beside ours (Quart's).
        self.own_cookie: str | None = getattr(module, "OWN_SESSION_COOKIE", None)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=10)


@pytest.fixture(scope="module", params=FRAMEWORKS)
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    name = f"tests.framework_apps.{request.param}_app"
    module = importlib.import_module(name)
    process, port = serve(lambda port: [sys.executable, "-m", "uvicorn", f"{name}:app",
                                        "--host", "127.0.0.1", "--port", str(port),
                                        "--log-level", "warning"], cwd=ROOT)
    try:
        yield Served(request.param, f"http://127.0.0.1:{port}", module)
    finally:
        process.terminate()
        process.wait(10)


def session_lines(response: httpx.Response, name: str) -> list[str]:
    return [line for line in response.headers.get_list("set-cookie")
            if line.split("=", 1)[0] == name or line.startswith(f"{name}.")]


def sign_in(client: httpx.Client, user: str = "alice", role: str = "USER") -> None:
    response = client.get("/login", params={"user": user, "role": role})
    assert response.status_code in (200, 201), response.text


def test_sign_in_and_read(served: Served) -> None:
    with served.client() as client:
        response = client.get("/me")
        assert response.json()["user"] is None
        assert session_lines(response, served.cookie) == []
        response = client.get("/login", params={"user": "alice", "role": "USER"})
        (line,) = session_lines(response, served.cookie)
        assert "HttpOnly" in line and "SameSite=Lax" in line
        assert client.get("/me").json()["user"] == "alice"
        assert session_lines(client.get("/me"), served.cookie) == []  # not re-issued


def test_guards(served: Served) -> None:
    with served.client() as client:
        response = client.get("/member", headers=JSON)
        assert response.status_code == 401 and response.json()["detail"]
        response = client.get("/member", headers=HTML)
        assert response.status_code == 303
        assert unquote(response.headers["location"]) == "/login?next=/member"
        sign_in(client)
        assert client.get("/member").json() == {"user": "alice"}
        assert client.get("/admin", headers=JSON).status_code == 403
        assert client.get("/admin", headers=HTML).status_code == 403
        sign_in(client, "root", "ADMIN")
        assert client.get("/admin").json() == {"admin": "root"}


def test_endpoints_with_csrf(served: Served) -> None:
    with served.client() as client:
        sign_in(client)
        body = client.get("/auth/session").json()
        assert body["session"]["user"] == {"id": "alice", "role": "USER"}
        token = body["csrfToken"]
        assert client.cookies.get(served.cookie)
        assert client.post("/auth/signout").status_code == 403  # no token
        assert client.post("/auth/signout", headers={"x-csrf-token": "x" * 43}
                           ).status_code == 403
        response = client.post("/auth/signout", headers={"x-csrf-token": token})
        assert response.status_code == 200 and response.json() == {"session": None}
        (line,) = session_lines(response, served.cookie)
        assert "Max-Age=0" in line or "expires=Thu, 01 Jan 1970" in line
        assert client.get("/me").json()["user"] is None
        assert client.get("/auth/session.js").status_code == 200


def test_framework_signout(served: Served) -> None:
    with served.client() as client:
        sign_in(client)
        response = client.post("/framework-signout")
        assert response.status_code in (200, 201), response.text
        (line,) = session_lines(response, served.cookie)
        assert "Max-Age=0" in line or "expires=Thu, 01 Jan 1970" in line
        if served.own_cookie is not None:
            assert client.cookies.get(served.own_cookie)  # the framework's, kept apart
        assert client.get("/me").json()["user"] is None


def test_framework_specific_routes(served: Served) -> None:
    """Litestar's session_user dependency; Django's decorator on a sync view."""
    route = {"litestar": "/whoami", "django": "/admin-sync"}.get(served.name)
    if route is None:
        pytest.skip("no route of its own")
    with served.client() as client:
        assert client.get(route, headers=JSON).status_code == 401
        sign_in(client, "bob", "USER")
        if served.name == "litestar":
            assert client.get(route).json() == {"user": "bob", "role": "USER"}
        else:
            assert client.get(route, headers=JSON).status_code == 403
            sign_in(client, "root", "ADMIN")
            assert client.get(route).json() == {"admin": "root"}


def test_bogus_cookie(served: Served) -> None:
    with served.client() as client:
        client.cookies.set(served.cookie, "not.a.valid.token.at-all")
        response = client.get("/me")
        assert response.status_code == 200 and response.json()["user"] is None
        (line,) = session_lines(response, served.cookie)
        assert "Max-Age=0" in line or "expires=Thu, 01 Jan 1970" in line


def test_chunked_session(served: Served) -> None:
    blob = secrets.token_urlsafe(5000)  # a ~9 KB token: three cookies
    with served.client() as client:
        sign_in(client)
        response = client.post("/big", json={"blob": blob})
        assert response.status_code in (200, 201), response.text
        lines = session_lines(response, served.cookie)
        assert len(lines) >= 2 and all(len(line) <= 4096 for line in lines)
        body = client.get("/me").json()
        assert body["user"] == "alice" and body["data"]["blob"] == blob


def test_websocket(served: Served) -> None:
    if not served.websockets:
        pytest.skip("the framework has no websockets")
    with served.client() as client:
        sign_in(client, "root", "ADMIN")
        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    ws_url = served.url.replace("http", "ws")
    with connect(f"{ws_url}/ws", additional_headers={"cookie": cookie}) as socket:
        assert json.loads(socket.recv()) == {"user": "root"}
    with connect(f"{ws_url}/ws-admin", additional_headers={"cookie": cookie}) as socket:
        assert json.loads(socket.recv()) == {"admin": True}
    with pytest.raises(InvalidStatus), connect(f"{ws_url}/ws-admin") as socket:
        socket.recv()  # closed before accept: the server refuses the handshake


@pytest.mark.parametrize("framework", [name for name in FRAMEWORKS if name != "django"])
def test_websocket_guard_closes_with_4401(framework: str) -> None:
    # In process: a server turns any close before accept into an HTTP 403.
    app = importlib.import_module(f"tests.framework_apps.{framework}_app").app
    sent: list[dict[str, object]] = []
    events = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, object]:
        if events:
            return events.pop()
        await anyio.sleep(0.05)  # the client goes once the socket was closed
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "scheme": "ws", "path": "/ws-admin", "raw_path": b"/ws-admin", "root_path": "",
             "query_string": b"", "headers": [(b"host", b"127.0.0.1")], "subprotocols": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    async def call() -> None:
        with anyio.fail_after(5):
            await app(scope, receive, send)

    anyio.run(call)  # the frameworks' own backend: asyncio
    assert sent[0]["type"] == "websocket.close" and sent[0]["code"] == 4401


def test_quart_refuses_its_own_cookie_name() -> None:
    from quart import Quart

    from asgi_jwt_session.integrations.quart import install

    with pytest.raises(ValueError, match="SESSION_COOKIE_NAME"):
        install(Quart(__name__), secret_key=SECRET, session_cookie="session")


def test_litestar_csrf_config_beside_the_endpoints() -> None:
    from litestar import Litestar
    from litestar.config.csrf import CSRFConfig
    from litestar.testing import TestClient

    from asgi_jwt_session.integrations.litestar import JWTSessionPlugin

    with pytest.raises(ValueError, match="csrf_cookie"):
        Litestar([], csrf_config=CSRFConfig(secret="s" * 32),
                 plugins=[JWTSessionPlugin(secret_key=SECRET)])
    app = Litestar([], csrf_config=CSRFConfig(secret="s" * 32),
                   plugins=[JWTSessionPlugin(secret_key=SECRET, csrf_cookie="jwt_csrftoken")])
    # The endpoints check their own token; Litestar's check leaves them alone.
    with TestClient(app) as client:
        token = client.get("/auth/session").json()["csrfToken"]
        assert client.post("/auth/signout").status_code == 403
        assert client.post("/auth/signout", headers={"x-csrf-token": token}).status_code == 200


def test_django_refuses_its_own_cookie_names() -> None:
    importlib.import_module("tests.framework_apps.django_app")  # the settings configured
    from django.conf import settings

    from asgi_jwt_session.integrations.django import asgi_application

    with pytest.raises(ValueError, match="CSRF_COOKIE_NAME"):
        asgi_application(SECRET, csrf_cookie=settings.CSRF_COOKIE_NAME)
    with pytest.raises(ValueError, match="SESSION_COOKIE_NAME"):
        asgi_application(SECRET, session_cookie=settings.SESSION_COOKIE_NAME)


def test_the_apps_beside_other_apps_of_their_framework() -> None:
    """Django's settings and BlackSheep's default router are the process's: another app of
    each framework made first (a docs page's, say) leaves these importable."""
    code = ("from blacksheep import Application\n"
            "from django.conf import settings\n"
            "Application()\n"
            "settings.configure(ROOT_URLCONF='elsewhere')\n"
            "import tests.framework_apps.blacksheep_app, tests.framework_apps.django_app\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr


def test_the_docs_apps_and_these_in_one_pytest_process() -> None:
    """tests/test_docs.py runs docs/frameworks.md; in the same pytest process (one run, or
    one xdist worker) the apps here still start, before it and after it."""
    docs = "tests/test_docs.py::test_page_runs[docs/frameworks.md]"
    here = "tests/test_frameworks_apps.py::"
    tests = [f"{here}test_websocket_guard_closes_with_4401", docs,
             f"{here}test_django_refuses_its_own_cookie_names"]
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("PYTEST_", "COV_"))}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             *tests], capture_output=True, text=True, cwd=ROOT, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]


def test_django_csrf_cookie_is_apart_from_djangos(served: Served) -> None:
    with served.client() as client:
        client.get("/auth/session")
        assert client.cookies.get(served.csrf_cookie)
        if served.csrf_cookie != "csrftoken":
            assert client.cookies.get("csrftoken") is None


def test_each_integration_imports_its_framework_only() -> None:
    names = ["litestar", "quart", "django", "falcon", "blacksheep"]
    for module in ["base", *names]:
        code = (f"import sys, asgi_jwt_session.integrations.{module}; "
                f"print(sorted(m for m in {names!r} if m in sys.modules))")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True, cwd=ROOT)
        assert result.stdout.split() == [str([module] if module != "base" else [])], module
