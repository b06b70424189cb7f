"""The apps in examples/, each driven as its README says: FastAPI (sign-in with CSRF,
guards, a role change in SQLite seen on the next request, refresh, sign-out, a websocket),
Starlette (an HTML form with CSRF), raw ASGI (through a real uvicorn), and the Python side
of Next.js + FastAPI against the real ``@auth/core``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from examples.fastapi_app.app import create_app as create_fastapi_app
from examples.nextjs_fastapi.api import create_app as create_nextjs_api
from examples.starlette_app.app import create_app as create_starlette_app
from support.servers import free_port
from tests.authjs_node import AuthJSFlow, install
from tests.conftest import SECRET, run_node

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html,application/xhtml+xml"}


def test_every_example_has_a_readme_and_a_test() -> None:
    folders = sorted(p.name for p in EXAMPLES.iterdir() if (p / "__init__.py").exists())
    assert folders == ["betterauth_fastapi", "fastapi_app", "nextjs_fastapi", "raw_asgi",
                       "starlette_app"]
    tests = {"betterauth_fastapi": "tests/test_betterauth_example.py"}  # needs node
    for folder in folders:
        readme = (EXAMPLES / folder / "README.md").read_text()
        assert tests.get(folder, "tests/test_examples.py") in readme, folder
    assert (EXAMPLES / "README.md").exists()


# --- FastAPI ------------------------------------------------------------------------------


class Browsers:
    """One TestClient, several users: each has a cookie jar of their own."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.jars: dict[str, httpx.Cookies] = {}
        self.current: str | None = None

    def use(self, name: str) -> TestClient:
        if self.current is not None:
            self.jars[self.current] = httpx.Cookies(self.client.cookies)
        self.client.cookies = self.jars.get(name, httpx.Cookies())
        self.current = name
        return self.client

    def csrf(self) -> dict[str, str]:
        body = self.client.get("/auth/session").json()
        return {body["csrfHeader"]: body["csrfToken"]}

    def sign_in(self, name: str, password: str | None = None) -> httpx.Response:
        client = self.use(name)
        return client.post("/sign-in", headers=self.csrf(),
                           json={"username": name, "password": password or f"{name}-password"})


@pytest.fixture
def fastapi_example(tmp_path: Path) -> Iterator[Browsers]:
    app = create_fastapi_app(secret_key=SECRET, database_url=f"sqlite:///{tmp_path}/app.db")
    with TestClient(app, follow_redirects=False) as client:  # runs the lifespan: the store
        yield Browsers(client)


def test_fastapi_sign_in_needs_csrf_and_a_password(fastapi_example: Browsers) -> None:
    client = fastapi_example.use("ada")
    assert client.get("/me", headers=JSON).status_code == 401
    refused = client.post("/sign-in", json={"username": "ada", "password": "ada-password"})
    assert refused.status_code == 403
    assert fastapi_example.sign_in("ada", "wrong").status_code == 401
    response = fastapi_example.sign_in("ada")
    assert response.status_code == 200, response.text
    assert response.json()["user"] == {"id": "ada", "role": "ADMIN"}
    assert client.get("/me").json()["user"] == {"id": "ada", "role": "ADMIN"}


def test_fastapi_role_change_is_seen_on_the_next_request(fastapi_example: Browsers) -> None:
    browsers = fastapi_example
    assert browsers.sign_in("bob").status_code == 200
    assert browsers.client.get("/reports", headers=JSON).status_code == 403
    assert browsers.client.get("/admin/users", headers=JSON).status_code == 403

    assert browsers.sign_in("ada").status_code == 200
    users = {user["id"]: user["role"] for user in browsers.client.get("/admin/users").json()}
    assert users == {"ada": "ADMIN", "olga": "ORG_ADMIN", "bob": "USER"}
    path = "/admin/users/bob/role"
    assert browsers.client.post(path, json={"role": "ORG_ADMIN"}).status_code == 403  # CSRF
    changed = browsers.client.post(path, json={"role": "ORG_ADMIN"}, headers=browsers.csrf())
    assert changed.json() == {"id": "bob", "role": "ORG_ADMIN", "version": 2}
    bad = browsers.client.post(path, json={"role": "KING"}, headers=browsers.csrf())
    assert bad.status_code == 400
    self_demotion = browsers.client.post("/admin/users/ada/role", json={"role": "USER"},
                                         headers=browsers.csrf())
    assert self_demotion.status_code == 400

    client = browsers.use("bob")  # no new sign-in, no refresh
    assert client.get("/reports").json() == {"report": "for bob", "role": "ORG_ADMIN"}
    refreshed = client.post("/auth/session/refresh", headers=browsers.csrf())
    assert refreshed.json()["session"]["user"] == {"id": "bob", "role": "ORG_ADMIN"}


def test_fastapi_websocket_and_sign_out(fastapi_example: Browsers) -> None:
    browsers = fastapi_example
    client = browsers.use("olga")
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
        pass
    assert refused.value.status_code == 401  # the server's denial response
    browsers.sign_in("olga")
    with client.websocket_connect("/ws") as websocket:
        websocket.send_text("hi")
        assert websocket.receive_json() == {"from": "olga", "text": "hi"}
    assert client.post("/auth/signout", headers=browsers.csrf()).json() == {"session": None}
    assert client.get("/me", headers=JSON).status_code == 401


def test_fastapi_openapi(fastapi_example: Browsers) -> None:
    spec = fastapi_example.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/auth/session", "/auth/session/refresh", "/auth/signout"} <= set(paths)
    assert paths["/sign-in"]["post"]["security"] == [{"csrfToken": []}]
    reports = paths["/reports"]["get"]
    assert reports["security"] == [{"sessionCookie": ["ORG_ADMIN"]}]
    assert {"401", "403"} <= set(reports["responses"])
    assert set(spec["components"]["securitySchemes"]) == {"sessionCookie", "csrfToken"}
    assert fastapi_example.client.get("/docs").status_code == 200


# --- Starlette ------------------------------------------------------------------------------

FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def test_starlette_example() -> None:
    client = TestClient(create_starlette_app(secret_key=SECRET), follow_redirects=False)
    assert client.get("/").text.count("Sign in") == 1
    redirect = client.get("/org", headers=HTML)
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=%2Forg"
    assert client.get("/api/me", headers=JSON).status_code == 401

    form = client.get("/login?next=/org")
    match = FIELD.search(form.text)
    assert match is not None and client.cookies["csrftoken"] == match.group(1)
    fields = {"username": "bob", "password": "bob-password", "next": "/org"}
    assert client.post("/login", data=fields).status_code == 403  # no CSRF token
    wrong = client.post("/login", data={**fields, "password": "x", "csrf_token": match[1]})
    assert wrong.status_code == 401
    signed_in = client.post("/login", data={**fields, "csrf_token": match[1]})
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/org"
    assert client.get("/org", headers=HTML).status_code == 403  # bob is a USER
    assert client.get("/api/me").json() == {"id": "bob", "role": "USER"}
    home = client.get("/")
    assert "Hello bob" in home.text
    with client.websocket_connect("/ws") as websocket:
        assert websocket.receive_json() == {"hello": "bob"}

    token = FIELD.search(home.text)
    assert token is not None
    signed_out = client.post("/auth/signout", data={"csrf_token": token[1]}, headers=HTML)
    assert signed_out.status_code == 303
    assert client.get("/api/me", headers=JSON).status_code == 401
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/ws"):
        pass
    assert refused.value.status_code == 401  # the server's denial response


# --- raw ASGI, through uvicorn ---------------------------------------------------------------


@pytest.fixture
def raw_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "uvicorn.log").open("w")
    env = {**os.environ, "SESSION_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.raw_asgi.app:app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{url}/me", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "uvicorn.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def test_raw_asgi_example(raw_server: str) -> None:
    with httpx.Client(base_url=raw_server) as client:
        assert client.get("/me").json() == {"user": None}
        assert client.post("/login", data={"username": "bob"}).status_code == 415
        wrong = client.post("/login", json={"username": "bob", "password": "nope"})
        assert wrong.status_code == 401
        assert client.post("/login", json={"username": "bob", "password": "bob-password"}
                           ).json() == {"user": {"id": "bob", "role": "USER"}}
        me = client.get("/me").json()["user"]
        assert (me["id"], me["role"]) == ("bob", "USER")
        assert client.get("/admin").status_code == 403
        client.post("/login", json={"username": "ada", "password": "ada-password"})
        assert client.get("/admin").json() == {"admin": "ada"}
        assert client.post("/logout", json={}).json() == {"user": None}
        assert client.get("/me").json() == {"user": None}
        assert client.get("/admin").status_code == 401
        assert client.get("/nowhere").status_code == 404


# --- Next.js + FastAPI: the Python side against the real @auth/core ---------------------------


@pytest.fixture(scope="module")
def authjs_flow(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthJSFlow]:
    yield from run_node(AuthJSFlow, node, install, tmp_path_factory.mktemp("authjs-example"))


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{name}={value}" for name, value in jar.items())}


@pytest.mark.parametrize("https", [False, True])
def test_nextjs_session_read_by_fastapi(authjs_flow: AuthJSFlow, https: bool,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_SECRET", SECRET)  # what NextAuth reads too
    monkeypatch.delenv("NEXTAUTH_SECRET", raising=False)
    api = create_nextjs_api()
    client = TestClient(api, base_url="https://app.test" if https else "http://app.test")
    assert client.get("/api/py/me", headers=JSON).status_code == 401
    assert client.get("/api/py/greeting").json() == {"greeting": "Hello, stranger"}

    ada = authjs_flow.sign_in("ada", "ADMIN", secret=SECRET, https=https)
    name = "__Secure-authjs.session-token" if https else "authjs.session-token"
    assert name in ada
    response = client.get("/api/py/me", headers=cookie_header(ada))
    assert response.json() == {"id": "ada", "role": "ADMIN", "name": "ada", "email": None}
    assert "set-cookie" not in response.headers  # Auth.js stays the only writer
    assert client.get("/api/py/admin/stats", headers=cookie_header(ada)).status_code == 200
    assert client.get("/api/py/greeting", headers=cookie_header(ada)).json() == {
        "greeting": "Hello, ada"}

    bob = authjs_flow.sign_in("bob", "USER", secret=SECRET, https=https)
    assert client.get("/api/py/admin/stats", headers={**JSON, **cookie_header(bob)}
                      ).status_code == 403
    # Auth.js still reads its session as it wrote it.
    assert authjs_flow.session(ada, secret=SECRET, https=https)["body"]["user"]["role"] == (
        "ADMIN")


def test_nextjs_api_refuses_another_secret(authjs_flow: AuthJSFlow) -> None:
    client = TestClient(create_nextjs_api(secret_key="another-secret-0123456789abcdef-012"),
                        base_url="http://app.test")
    jar = authjs_flow.sign_in("ada", "ADMIN", secret=SECRET)
    response = client.get("/api/py/me", headers={**JSON, **cookie_header(jar)})
    assert response.status_code == 401
    assert "set-cookie" not in response.headers  # never expires Auth.js's cookie


def test_nextjs_openapi_names_the_authjs_cookie(monkeypatch: pytest.MonkeyPatch) -> None:
    api = create_nextjs_api(secret_key=SECRET)
    spec = TestClient(api).get("/api/py/openapi.json").json()
    assert spec["components"]["securitySchemes"]["sessionCookie"]["name"] == (
        "authjs.session-token")
    assert set(spec["paths"]["/api/py/admin/stats"]["get"]["responses"]) >= {"401", "403"}
