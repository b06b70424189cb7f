"""The demo app without a browser: seeding, passwords, pages, the JSON API's 401/403,
the websocket's close codes, role changes, and cookies over http and https (in process,
and through a real uvicorn with a self-signed certificate)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from demo.accounts import DEMO_ACCOUNTS, hash_password, verify_password
from demo.app import create_app, secret_key
from support.servers import PostgresServer, free_port
from tests.conftest import SECRET, new_database

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {account.id: account.password for account in DEMO_ACCOUNTS}
EMAILS = {account.id: account.email for account in DEMO_ACCOUNTS}
JSON = {"accept": "application/json"}
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


# --- a real demo server, shared with the browser tests ---------------------------------


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return cert_file, key_file


class DemoServer:
    """``python -m demo`` in a subprocess, on a free port, with a temp SQLite file."""

    def __init__(self, directory: Path, *, https: bool = False,
                 env: dict[str, str] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.scheme = "https" if https else "http"
        self.database = directory / "demo.sqlite3"
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.database}",
               "SESSION_SECRET": secrets.token_urlsafe(32), **(env or {})}
        command = [sys.executable, "-m", "demo", "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "warning"]
        if https:
            cert_file, key_file = self_signed_certificate(directory)
            command += ["--ssl-certfile", str(cert_file), "--ssl-keyfile", str(key_file)]
        self.log_path = directory / "server.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.log,
                                        stderr=subprocess.STDOUT)
        try:
            self.wait_until_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def wait_until_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the demo exited:\n{self.log_path.read_text()}")
            try:
                httpx.get(f"{self.url}/login", verify=False, timeout=1.0).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.02)
        raise RuntimeError(f"the demo did not start:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


# --- in process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo database as the first start leaves it (hashing the passwords takes a while:
    once per module)."""
    path = tmp_path_factory.mktemp("seeded") / "demo.sqlite3"
    with TestClient(create_app(f"sqlite:///{path}", SECRET)):
        pass
    return path


@pytest.fixture
def database(tmp_path: Path, seeded: Path) -> Path:
    """A copy of the seeded database, the test's own."""
    path = tmp_path / "demo.sqlite3"
    source, target = sqlite3.connect(seeded), sqlite3.connect(path)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return path


@pytest.fixture
def client(database: Path) -> Iterator[TestClient]:
    with TestClient(create_app(f"sqlite:///{database}", SECRET)) as client:
        yield client


def csrf(client: TestClient) -> str:
    page = client.get("/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def sign_in(client: TestClient, user_id: str, next_url: str = "") -> httpx.Response:
    form = {"email": EMAILS[user_id], "password": PASSWORDS[user_id],
            "csrf_token": csrf(client), "next": next_url}
    return client.post("/login", data=form, follow_redirects=False)


def test_first_start_seeds_the_demo_accounts(tmp_path: Path) -> None:
    database = tmp_path / "first.sqlite3"
    with TestClient(create_app(f"sqlite:///{database}", SECRET)):
        pass
    with sqlite3.connect(database) as db:
        roles = dict(db.execute("SELECT id, role FROM users").fetchall())
        hashes = dict(db.execute("SELECT user_id, password_hash FROM demo_passwords"))
    assert roles == {"ada": "ADMIN", "olga": "ORG_ADMIN", "uma": "USER", "ulf": "USER"}
    for user_id, encoded in hashes.items():
        assert encoded.startswith("scrypt$16384$8$1$")
        assert PASSWORDS[user_id] not in encoded
        assert verify_password(PASSWORDS[user_id], encoded)

    # A second start keeps what is there: no new rows, no new hashes, changes kept.
    with sqlite3.connect(database) as db:
        db.execute("UPDATE users SET role = 'ADMIN' WHERE id = 'uma'")
    with TestClient(create_app(f"sqlite:///{database}", SECRET)):
        pass
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (4,)
        assert db.execute("SELECT role FROM users WHERE id = 'uma'").fetchone() == ("ADMIN",)
        assert dict(db.execute("SELECT user_id, password_hash FROM demo_passwords")) == hashes


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A database of its own on the shared test server (the demo's tables are fixed)."""
    return new_database(postgres.dsn, "demo")


def test_postgresql(postgres_url: str) -> None:
    with TestClient(create_app(postgres_url, SECRET)) as client:
        sign_in(client, "ada")
        assert change_role(client, "uma", "ORG_ADMIN").status_code == 303
        users = client.get("/api/admin/users", headers=JSON).json()["users"]
        assert {user["id"]: user["role"] for user in users} == {
            "ada": "ADMIN", "olga": "ORG_ADMIN", "ulf": "USER", "uma": "ORG_ADMIN"}
    with TestClient(create_app(postgres_url, SECRET)) as client:  # not seeded again
        assert sign_in(client, "uma").status_code == 303
        assert client.get("/api/me", headers=JSON).json()["role"] == "ORG_ADMIN"
        assert len(client.get("/api/me", headers=JSON).json()) == 5


def test_password_hashing() -> None:
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second  # a new salt each time
    assert verify_password("correct horse", first)
    assert verify_password("correct horse", second)
    assert not verify_password("correct horsf", first)
    assert not verify_password("", first)
    for broken in ("", "plain", "md5$1$2$3$4$5", "scrypt$x$8$1$AA$AA", first.rsplit("$", 1)[0]):
        assert not verify_password("correct horse", broken)


def test_secret_from_env_or_a_file_made_once(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_SECRET", "from-the-environment")
    assert secret_key(tmp_path / ".secret") == "from-the-environment"
    assert not (tmp_path / ".secret").exists()
    monkeypatch.delenv("SESSION_SECRET")
    made = secret_key(tmp_path / ".secret")
    assert len(made) >= 32
    assert (tmp_path / ".secret").stat().st_mode & 0o777 == 0o600
    assert secret_key(tmp_path / ".secret") == made


def test_sign_in_and_dashboard(client: TestClient) -> None:
    response = sign_in(client, "uma")
    assert response.status_code == 303
    assert response.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert "Hello, uma" in page.text
    assert 'data-session-role>USER<' in page.text
    assert re.search(r"data-session-expires>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC<", page.text)
    assert "set-cookie" not in page.headers  # reading the session re-issues nothing


def test_sign_in_refused(client: TestClient) -> None:
    form = {"email": "uma@example.com", "password": "wrong", "csrf_token": csrf(client)}
    response = client.post("/login", data=form, follow_redirects=False)
    assert response.status_code == 400
    assert "Wrong email or password" in response.text
    assert "session" not in response.cookies
    form = {"email": "nobody@example.com", "password": "x", "csrf_token": csrf(client)}
    assert client.post("/login", data=form).status_code == 400
    # The sign-in form is CSRF-checked too.
    form = {"email": "uma@example.com", "password": PASSWORDS["uma"]}
    response = client.post("/login", data=form, headers=HTML, follow_redirects=False)
    assert response.status_code == 403
    assert "CSRF check failed" in response.text


def test_email_is_case_insensitive(client: TestClient) -> None:
    form = {"email": " UMA@Example.com ", "password": PASSWORDS["uma"],
            "csrf_token": csrf(client)}
    assert client.post("/login", data=form, follow_redirects=False).status_code == 303


@pytest.mark.parametrize(("asked", "landing"), [
    ("/org", "/org"),
    ("/admin?tab=users", "/admin?tab=users"),
    ("//evil.example/", "/dashboard"),
    ("https://evil.example/", "/dashboard"),
    ("", "/dashboard"),
])
def test_next_after_sign_in(client: TestClient, asked: str, landing: str) -> None:
    assert sign_in(client, "ada", asked).headers["location"] == landing


def test_html_guards(client: TestClient) -> None:
    response = client.get("/admin", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fadmin"
    login_page = client.get(response.headers["location"])
    assert "Sign in to see <code>/admin</code>" in login_page.text

    sign_in(client, "uma")
    for path, needs in (("/org", "ORG_ADMIN"), ("/admin", "ADMIN")):
        page = client.get(path, headers=HTML)
        assert page.status_code == 403
        assert "403 · Forbidden" in page.text
        assert f"<code>{path}</code> needs" in page.text
        assert f">{needs}</span> or a higher role" in page.text
        assert "Refresh session and try again" in page.text

    sign_in(client, "olga")
    assert client.get("/org", headers=HTML).status_code == 200
    assert client.get("/admin", headers=HTML).status_code == 403


def test_api_401_and_403_json(client: TestClient) -> None:
    for path in ("/api/me", "/api/admin/users"):
        response = client.get(path, headers=JSON)
        assert response.status_code == 401
        assert response.json() == {"detail": "Not authenticated"}

    sign_in(client, "uma")
    me = client.get("/api/me", headers=JSON)
    assert me.status_code == 200
    assert me.json()["id"] == "uma"
    assert me.json()["role"] == "USER"
    assert me.json()["email"] == "uma@example.com"
    response = client.get("/api/admin/users", headers=JSON)
    assert response.status_code == 403
    assert response.json() == {"detail": "Permission denied"}

    sign_in(client, "ada")
    users = client.get("/api/admin/users", headers=JSON).json()["users"]
    assert [user["id"] for user in users] == ["ada", "olga", "ulf", "uma"]


@pytest.mark.parametrize(("user_id", "code"), [(None, 4401), ("uma", 4403)])
def test_websocket_close_codes(client: TestClient, user_id: str | None, code: int) -> None:
    if user_id is not None:
        sign_in(client, user_id)
    with (client.websocket_connect("/ws/org") as websocket,
          pytest.raises(WebSocketDisconnect) as closed):
        websocket.receive_text()
    assert closed.value.code == code


@pytest.mark.parametrize("user_id", ["olga", "ada"])
def test_websocket_for_org_admins(client: TestClient, user_id: str) -> None:
    sign_in(client, user_id)
    with client.websocket_connect("/ws/org") as websocket:
        hello = websocket.receive_json()
        assert hello["hello"] == user_id
        with pytest.raises(WebSocketDisconnect) as closed:
            websocket.receive_text()
    assert closed.value.code == 1000


def change_role(client: TestClient, user_id: str, role: str, *,
                token: str | None = None) -> httpx.Response:
    form = {"role": role, "csrf_token": csrf(client) if token is None else token}
    return client.post(f"/admin/users/{user_id}/role", data=form, headers=HTML,
                       follow_redirects=False)


def test_admin_changes_a_role(client: TestClient) -> None:
    sign_in(client, "ada")
    assert change_role(client, "uma", "ORG_ADMIN").status_code == 303
    page = client.get("/admin")
    assert "uma is now ORG_ADMIN" in page.text
    assert 'id="user-uma"' in page.text
    row = page.text.split('id="user-uma"')[1].split("</tr>")[0]
    assert 'class="role role-org_admin">ORG_ADMIN<' in row
    assert '<td data-label="Version">2</td>' in row  # the session version was bumped
    assert 'class="flash" role="status">uma is now ORG_ADMIN' in page.text  # done
    assert "uma is now" not in client.get("/admin").text  # the message is shown once

    assert change_role(client, "uma", "OWNER").status_code == 303
    assert "Not changed: unknown role" in client.get("/admin").text
    assert change_role(client, "ghost", "USER").status_code == 303
    assert "Not changed" in client.get("/admin").text

    assert change_role(client, "uma", "USER", token="x" * 43).status_code == 403
    assert client.get("/api/me", headers=JSON).json()["role"] == "ADMIN"


def test_role_change_reaches_the_user_on_refresh(client: TestClient, database: Path) -> None:
    sign_in(client, "ulf")
    with TestClient(create_app(f"sqlite:///{database}", SECRET)) as admin:
        sign_in(admin, "ada")
        assert change_role(admin, "ulf", "ADMIN").status_code == 303
    token = client.get("/auth/session").json()["csrfToken"]
    refreshed = client.post("/auth/session/refresh", headers={"x-csrf-token": token})
    assert refreshed.json()["session"]["user"]["role"] == "ADMIN"
    assert client.get("/admin", headers=HTML).status_code == 200


def test_role_change_shows_on_the_next_request(client: TestClient) -> None:
    sign_in(client, "uma")
    admin = TestClient(client.app)  # another browser on the same running app
    sign_in(admin, "ada")
    assert change_role(admin, "uma", "ORG_ADMIN").status_code == 303
    response = client.get("/api/me", headers=JSON)
    assert response.json()["role"] == "ORG_ADMIN"
    assert "session=" in response.headers.get("set-cookie", "")  # re-issued
    assert client.get("/org", headers=HTML).status_code == 200


def test_only_admins_change_roles(client: TestClient) -> None:
    sign_in(client, "olga")
    assert change_role(client, "olga", "ADMIN").status_code == 403
    assert client.get("/api/me", headers=JSON).json()["role"] == "ORG_ADMIN"


def test_admin_changing_their_own_role_sees_it_at_once(client: TestClient) -> None:
    sign_in(client, "ada")
    assert change_role(client, "olga", "ADMIN").status_code == 303  # not the last admin
    assert change_role(client, "ada", "ORG_ADMIN").status_code == 303
    assert client.get("/api/me", headers=JSON).json()["role"] == "ORG_ADMIN"
    assert client.get("/admin", headers=HTML).status_code == 403


def test_the_last_admin_keeps_the_role(client: TestClient) -> None:
    sign_in(client, "ada")
    for role in ("ORG_ADMIN", "USER"):
        assert change_role(client, "ada", role).status_code == 303
        page = client.get("/admin")
        # A refusal, shown as one (an alert in the error style), not as a success.
        assert ('class="error refusal" role="alert" data-refusal>Not changed: ada is the '
                "last admin") in page.text
        assert 'class="flash"' not in page.text
        row = page.text.split('id="user-ada"')[1].split("</tr>")[0]
        assert '<td data-label="Version">1</td>' in row  # nothing written: as seeded
    assert client.get("/api/me", headers=JSON).json()["role"] == "ADMIN"
    assert client.get("/admin", headers=HTML).status_code == 200
    assert change_role(client, "ada", "ADMIN").status_code == 303  # staying admin is fine
    assert "ada is now ADMIN" in client.get("/admin").text

    # With a second admin, either may step down, but not both.
    assert change_role(client, "uma", "ADMIN").status_code == 303
    assert change_role(client, "uma", "USER").status_code == 303
    assert "uma is now USER" in client.get("/admin").text
    assert change_role(client, "ada", "USER").status_code == 303
    assert "Not changed: ada is the last admin" in client.get("/admin").text


def test_sign_in_page_lists_the_database_users(client: TestClient) -> None:
    sign_in(client, "ada")
    assert change_role(client, "uma", "ORG_ADMIN").status_code == 303
    client.cookies.clear()
    page = client.get("/login").text
    rows = re.findall(r"<td[^>]*>([a-z]+@example\.com)</td>\s*<td[^>]*>"
                      r"<span class=\"role [^\"]+\">(\w+)<", page)
    assert rows == [("ada@example.com", "ADMIN"), ("olga@example.com", "ORG_ADMIN"),
                    ("ulf@example.com", "USER"), ("uma@example.com", "ORG_ADMIN")]


def test_dashboard_shows_the_current_session_version(client: TestClient,
                                                     database: Path) -> None:
    sign_in(client, "ulf")
    assert "data-session-version>1<" in client.get("/dashboard").text
    with TestClient(create_app(f"sqlite:///{database}", SECRET)) as admin:
        sign_in(admin, "ada")
        assert change_role(admin, "ulf", "ORG_ADMIN").status_code == 303
    token = client.get("/auth/session").json()["csrfToken"]
    client.post("/auth/session/refresh", headers={"x-csrf-token": token})
    assert client.get("/api/me", headers=JSON).json()["version"] == 2
    assert "data-session-version>2<" in client.get("/dashboard").text


def test_signed_out_message_and_favicon(client: TestClient) -> None:
    sign_in(client, "uma")
    page = client.get("/dashboard")
    assert '<input type="hidden" name="next" value="/login?signed_out">' in page.text
    assert '<link rel="icon" href="/static/favicon.svg"' in page.text
    assert client.get("/static/favicon.svg").status_code == 200
    assert "You are signed out" not in client.get("/login?signed_out").text  # still in
    client.post("/auth/signout", data={"csrf_token": csrf(client)}, headers=HTML)
    assert "You are signed out." in client.get("/login?signed_out").text
    assert "You are signed out." not in client.get("/login").text


def test_sign_out_form(client: TestClient) -> None:
    sign_in(client, "uma")
    copy = dict(client.cookies)  # a copy of the cookie, as a thief would keep it
    page = client.get("/dashboard")
    token = re.search(r'action="/signout">\s*<input type="hidden" name="csrf_token" '
                      r'value="([^"]+)"', page.text)
    assert token is not None
    response = client.post("/signout", data={"csrf_token": token.group(1),
                                             "next": "/login?signed_out"},
                           headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?signed_out"
    assert response.headers["set-cookie"].startswith("session=; ")
    assert "Max-Age=0" in response.headers["set-cookie"]
    assert client.get("/api/me", headers=JSON).status_code == 401
    client.cookies.update(copy)  # the session was revoked, not only this cookie expired
    assert client.get("/api/me", headers=JSON).status_code == 401
    assert client.post("/signout", data={"csrf_token": "x" * 43},
                       headers=HTML).status_code == 403


def test_a_bogus_cookie_reads_as_signed_out(client: TestClient) -> None:
    client.cookies.set("session", "not.a.token.at.all")
    response = client.get("/dashboard", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fdashboard"


def test_static_files_and_client(client: TestClient) -> None:
    assert client.get("/static/demo.css").status_code == 200
    assert "asgiJwtSession" in client.get("/static/demo.js").text
    assert "refreshSession" in client.get("/auth/session.js").text


@pytest.mark.parametrize(("base_url", "secure"), [("http://localhost", False),
                                                  ("https://demo.example", True)])
def test_cookies_secure_exactly_over_https(database: Path, base_url: str,
                                           secure: bool) -> None:
    with TestClient(create_app(f"sqlite:///{database}", SECRET), base_url=base_url) as client:
        login_page = client.get("/login")
        assert ("Secure" in login_page.headers["set-cookie"]) is secure  # csrftoken
        response = sign_in(client, "uma")
        cookie = response.headers["set-cookie"]
        assert cookie.startswith("session=")
        assert "HttpOnly" in cookie
        assert ("Secure" in cookie) is secure
        assert client.get("/dashboard").status_code == 200


# --- a real server over https ------------------------------------------------------------


def test_real_server_over_https_sets_secure_cookies(tmp_path: Path) -> None:
    server = DemoServer(tmp_path, https=True)
    try:
        with httpx.Client(base_url=server.url, verify=False) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            form = {"email": EMAILS["olga"], "password": PASSWORDS["olga"],
                    "csrf_token": token.group(1), "next": "/org"}
            response = client.post("/login", data=form,
                                   headers={"origin": server.url, **HTML})
            assert response.status_code == 303
            assert response.headers["location"] == "/org"
            cookie = response.headers["set-cookie"]
            assert "; Secure" in cookie
            assert "HttpOnly" in cookie
            assert client.get("/org", headers=HTML).status_code == 200
            me = client.get("/api/me", headers=JSON).json()
            assert me["role"] == "ORG_ADMIN"
    finally:
        server.stop()
    assert "demo accounts" in server.log_path.read_text()


# --- session management: active sessions, fresh login, view as ---------------------------


def post_form(client: TestClient, path: str, **fields: str) -> httpx.Response:
    return client.post(path, data={"csrf_token": csrf(client), **fields}, headers=HTML,
                       follow_redirects=False)


def session_ids(page: str) -> list[str]:
    return re.findall(r'action="/sessions/([A-Za-z0-9_-]+)/revoke"', page)


def test_active_sessions_sign_out_another_device(client: TestClient) -> None:
    sign_in(client, "uma")
    laptop = dict(client.cookies)
    client.cookies.clear()
    sign_in(client, "uma")  # a second browser
    page = client.get("/sessions", headers=HTML)
    assert page.status_code == 200
    ids = session_ids(page.text)
    assert len(ids) == 2
    assert page.text.count("data-current") == 1
    current = re.search(r'data-current>.*?/sessions/([A-Za-z0-9_-]+)/revoke', page.text,
                        re.S)
    assert current is not None
    [other] = [id_ for id_ in ids if id_ != current.group(1)]

    response = post_form(client, f"/sessions/{other}/revoke")
    assert response.headers["location"] == "/sessions"
    page = client.get("/sessions")
    assert "That device is signed out" in page.text
    assert session_ids(page.text) == [current.group(1)]

    phone = dict(client.cookies)
    client.cookies.clear()
    client.cookies.update(laptop)
    response = client.get("/dashboard", headers=HTML, follow_redirects=False)
    assert response.headers["location"] == "/login?next=%2Fdashboard"
    client.cookies.clear()
    client.cookies.update(phone)
    assert client.get("/dashboard", headers=HTML).status_code == 200


def test_sessions_refuse_another_users_id_and_sign_out_here(client: TestClient) -> None:
    sign_in(client, "ulf")
    [ulf_session] = session_ids(client.get("/sessions").text)
    client.cookies.clear()
    sign_in(client, "uma")
    post_form(client, f"/sessions/{ulf_session}/revoke")
    assert "No such session." in client.get("/sessions").text
    post_form(client, "/sessions/not-an-id/revoke")
    assert "No such session." in client.get("/sessions").text

    [mine] = session_ids(client.get("/sessions").text)
    response = post_form(client, f"/sessions/{mine}/revoke")
    assert response.headers["location"] == "/login?signed_out"
    assert client.get("/api/me", headers=JSON).status_code == 401


def test_sign_out_all_other_devices(client: TestClient) -> None:
    others = []
    for _ in range(2):
        sign_in(client, "olga")
        others.append(dict(client.cookies))
        client.cookies.clear()
    sign_in(client, "olga")
    assert len(session_ids(client.get("/sessions").text)) == 3
    assert post_form(client, "/sessions/revoke-others").status_code == 303
    page = client.get("/sessions")
    assert "Every other device is signed out" in page.text
    assert len(session_ids(page.text)) == 1
    assert client.get("/api/me", headers=JSON).status_code == 200
    here = dict(client.cookies)
    for cookies in others:
        client.cookies.clear()
        client.cookies.update(cookies)
        assert client.get("/api/me", headers=JSON).status_code == 401
    client.cookies.clear()
    client.cookies.update(here)
    assert client.get("/api/me", headers=JSON).status_code == 200


def test_password_change_needs_a_fresh_login(database: Path) -> None:
    with TestClient(create_app(f"sqlite:///{database}", SECRET, fresh_login_age=1)) as client:
        sign_in(client, "ulf")
        elsewhere = dict(client.cookies)
        client.cookies.clear()
        sign_in(client, "ulf")
        assert client.get("/account/password", headers=HTML).status_code == 200  # fresh
        time.sleep(2.1)
        response = client.get("/account/password", headers=HTML, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Faccount%2Fpassword&reauth=1"
        page = client.get(response.headers["location"])
        assert "Confirm your password" in page.text
        assert 'action="/login/confirm"' in page.text
        json = client.post("/account/password", data={"password": "x"}, headers=JSON)
        assert json.status_code == 401
        assert json.json()["reason"] == "reauthentication_required"

        wrong = post_form(client, "/login/confirm", password="nope", next="/account/password")
        assert wrong.status_code == 400
        assert "Wrong password." in wrong.text
        right = post_form(client, "/login/confirm", password=PASSWORDS["ulf"],
                          next="/account/password")
        assert right.headers["location"] == "/account/password"
        assert client.get("/account/password", headers=HTML).status_code == 200

        assert post_form(client, "/account/password", password="short").status_code == 400
        done = post_form(client, "/account/password", password="a-new-password")
        assert done.headers["location"] == "/sessions"
        assert "Password changed" in client.get("/sessions").text
        assert client.get("/api/me", headers=JSON).status_code == 200  # stays here
        client.cookies.clear()
        client.cookies.update(elsewhere)
        assert client.get("/api/me", headers=JSON).status_code == 401  # signed out there
        assert sign_in(client, "ulf").status_code == 400  # the old password is gone
        form = {"email": EMAILS["ulf"], "password": "a-new-password",
                "csrf_token": csrf(client)}
        assert client.post("/login", data=form, follow_redirects=False).status_code == 303


def test_admin_views_as_a_user_and_comes_back(client: TestClient) -> None:
    sign_in(client, "ada")
    response = post_form(client, "/admin/users/uma/view-as")
    assert response.headers["location"] == "/dashboard"
    page = client.get("/dashboard")
    assert "Hello, uma" in page.text
    assert "data-impersonating" in page.text
    assert "You are <strong>ada</strong>, viewing the app as" in page.text
    assert client.get("/api/me", headers=JSON).json()["email"] == "uma@example.com"
    assert client.get("/admin", headers=HTML).status_code == 403  # uma's role now
    assert client.get("/api/me", headers=JSON).json()["id"] == "uma"
    assert client.get("/sessions", headers=HTML, follow_redirects=False).status_code == 303

    back = post_form(client, "/view-as/stop")
    assert back.headers["location"] == "/admin"
    page = client.get("/admin", headers=HTML)
    assert page.status_code == 200
    assert "data-impersonating" not in page.text
    assert client.get("/api/me", headers=JSON).json()["id"] == "ada"

    post_form(client, "/admin/users/ghost/view-as")
    assert "Not started: No user &#39;ghost&#39;" in client.get("/admin").text
    sign_in(client, "olga")
    assert post_form(client, "/admin/users/uma/view-as").status_code == 403
