"""Auth.js mode under the issue 11 findings (items 5, 12, 13, 14, 15), against the real
``@auth/core``: its ``Auth()`` handler signs users in with a Credentials provider
(tests/js/authjs_flow.mjs) and reads back what the Python side writes.

- 5: tokens without ``auth_time`` after ``revoke_sessions()`` (a real SQLite RoleStore);
- 12: sessions longer than ``max_cookie_size``, and re-issues that would not fit;
- 13: a custom ``cookies.sessionToken.name``;
- 14: the secrets Auth.js reads from the environment;
- 15: a re-issued token keeps Auth.js's ``session.maxAge``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from asgi_jwt_session import apply as apply_module
from asgi_jwt_session.authjs import AuthJSCodec, AuthJSFormat, authjs_secrets_from_env
from asgi_jwt_session.endpoints import session_routes
from asgi_jwt_session.freshness import Freshness
from asgi_jwt_session.store import RoleStore, revoke_sessions
from tests.authjs_node import AuthJSFlow, install
from tests.conftest import OLD_SECRET, SECRET, Users, make_app, opening, run_node

Client = Callable[..., TestClient]

PLAIN = "authjs.session-token"
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])  # `databases`


@pytest.fixture(scope="session")
def flow(node: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthJSFlow]:
    yield from run_node(AuthJSFlow, node, install, tmp_path_factory.mktemp("authjs-flow"))


def session_cookies(jar: dict[str, str], name: str = PLAIN) -> dict[str, str]:
    return {k: v for k, v in jar.items() if k == name or k.startswith(f"{name}.")}


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


def token_of(cookies: dict[str, str], name: str = PLAIN) -> str:
    if name in cookies:
        return cookies[name]
    return "".join(cookies[f"{name}.{i}"] for i in range(len(cookies)))


def apply(cookies: dict[str, str], lines: list[str]) -> dict[str, str]:
    """The browser's cookies after these Set-Cookie lines."""
    cookies = dict(cookies)
    for line in lines:
        name, _, rest = line.partition("=")
        value = rest.split(";", 1)[0]
        if "Max-Age=0" in rest or not value:
            cookies.pop(name, None)
        else:
            cookies[name] = value
    return cookies


def deletions(lines: list[str]) -> list[str]:
    return [line.split("=", 1)[0] for line in lines if "Max-Age=0" in line]


def claims_of(token: str, name: str = PLAIN, secret: Any = SECRET) -> dict[str, Any]:
    return AuthJSCodec(secret, salt=name).decode(token)


def next_second() -> None:
    time.sleep(1.02 - time.time() % 1)


# --- item 13: a custom session cookie name -----------------------------------------------------


@pytest.mark.parametrize("https", [False, True])
def test_custom_session_cookie_name(flow: AuthJSFlow, client_for: Client, https: bool) -> None:
    """``cookies.sessionToken.name`` in Auth.js is ``session_cookie`` here, one name on
    http and https, its own HKDF salt; both sides read what the other writes."""
    name = "app.session"
    jar = flow.sign_in("alice", "ADMIN", secret=SECRET, cookieName=name, https=https)
    cookies = session_cookies(jar, name)
    assert list(cookies) == [name]
    app = make_app(session_routes(), session_cookie=name, format=AuthJSFormat(write=True))
    client = client_for(app, base_url="https://testserver" if https else "http://testserver")
    body = client.get("/me", headers=cookie_header(cookies)).json()
    assert (body["id"], body["role"]) == ("alice", "ADMIN")

    # Python signs bob in; Auth.js reads the cookie it wrote.
    response = client.get("/login", params={"user": "bob", "role": "USER"},
                          headers=cookie_header(cookies))
    lines = response.headers.get_list("set-cookie")
    assert all(line.startswith(f"{name}=") for line in lines)
    assert ("; Secure" in lines[0]) is https
    written = apply(cookies, lines)
    seen = flow.session(written, secret=SECRET, cookieName=name, https=https)
    assert seen["status"] == 200
    assert seen["body"]["user"]["id"] == "bob" and seen["body"]["user"]["role"] == "USER"

    # The default names are not read: another cookie.
    default = make_app(format=AuthJSFormat())
    assert client_for(default).get("/me", headers=cookie_header(cookies)).json()["id"] is None


# --- item 14: the secrets Auth.js reads from the environment -----------------------------------

ENVIRONMENTS: list[dict[str, str]] = [
    {"AUTH_SECRET": "s-0"},
    {"AUTH_SECRET": "one,two"},  # a comma is part of the secret
    {"AUTH_SECRET": "s-0", "AUTH_SECRET_1": "s-1"},
    {"AUTH_SECRET": "s-0", "AUTH_SECRET_1": "s-1", "AUTH_SECRET_2": "s-2", "AUTH_SECRET_3": "s-3"},
    {"AUTH_SECRET": "s-0", "AUTH_SECRET_3": "s-3"},
    {"AUTH_SECRET_1": "s-1", "AUTH_SECRET_2": "s-2"},
    {"AUTH_SECRET": "", "AUTH_SECRET_1": "s-1"},
    {"NEXTAUTH_SECRET": "n-0", "AUTH_SECRET_1": "s-1"},
    {"NEXTAUTH_SECRET": "n-0", "AUTH_SECRET": "s-0"},
]


@pytest.mark.parametrize("framework", ["core", "next-auth"])
def test_secrets_from_env_match_authjs(flow: AuthJSFlow, framework: str) -> None:
    """The helper gives the secrets, in the order, that Auth.js ends up with."""
    for env in ENVIRONMENTS:
        theirs = flow.call("secrets", env=env, framework=framework)
        assert authjs_secrets_from_env(env, framework=framework) == theirs, env  # type: ignore[arg-type]


def test_secrets_from_env_conventions() -> None:
    env = {"AUTH_SECRET": "s-0,x", "AUTH_SECRET_1": "s-1", "AUTH_SECRET_2": "s-2"}
    assert authjs_secrets_from_env(env) == ["s-0,x"]  # next-auth: AUTH_SECRET alone
    assert authjs_secrets_from_env(env, framework="core") == ["s-2", "s-1", "s-0,x"]
    with pytest.raises(ValueError, match=r"no Auth\.js secret"):
        authjs_secrets_from_env({})
    with pytest.raises(ValueError, match="framework"):
        authjs_secrets_from_env(env, framework="django")  # type: ignore[arg-type]


def test_secrets_from_env_default_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTH_SECRET", "NEXTAUTH_SECRET", "AUTH_SECRET_1", "AUTH_SECRET_2",
                 "AUTH_SECRET_3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AUTH_SECRET_1", "from-os")
    assert authjs_secrets_from_env() == ["from-os"]


@pytest.mark.parametrize("framework", ["core", "next-auth"])
def test_rotated_env_secrets_both_ways(flow: AuthJSFlow, client_for: Client,
                                       framework: str) -> None:
    """Rotation the way Auth.js reads it: a token Auth.js made from the environment
    reads in Python with the helper's secrets, and Auth.js reads what Python writes."""
    env = {"AUTH_SECRET": f"{OLD_SECRET},with-a-comma", "AUTH_SECRET_1": SECRET}
    secrets = authjs_secrets_from_env(env, framework=framework)  # type: ignore[arg-type]
    options = {"env": env, "framework": framework}
    cookies = session_cookies(flow.sign_in("alice", "ADMIN", **options))
    app = make_app(secret_key=secrets, format=AuthJSFormat(write=True))
    client = client_for(app)
    assert client.get("/me", headers=cookie_header(cookies)).json()["id"] == "alice"
    response = client.get("/login", params={"user": "bob"}, headers=cookie_header(cookies))
    written = apply(cookies, response.headers.get_list("set-cookie"))
    assert flow.session(written, **options)["body"]["user"]["id"] == "bob"

    # What the docs used to suggest reads none of it.
    split = make_app(secret_key=env["AUTH_SECRET"].split(","), format=AuthJSFormat())
    if framework == "next-auth":
        assert client_for(split).get("/me", headers=cookie_header(cookies)).json()["id"] is None


# --- item 5: Auth.js tokens without auth_time after a revocation -------------------------------


@asyncio_only
@pytest.mark.parametrize("write", [False, True])
def test_revocation_without_auth_time(flow: AuthJSFlow, client_for: Client, tmp_path: Path,
                                      table: str, write: bool,
                                      monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """Judged by ``iat``: a token Auth.js issued before the revocation is signed out, a
    later sign-in is not (and, writing, its cookie is never deleted); a warning says
    so, once."""
    monkeypatch.setattr(apply_module, "warned_no_auth_time", False)
    store = RoleStore(f"sqlite:///{tmp_path / 'roles.db'}", table=table)
    app = make_app(session_routes(), lifespan=opening(store), format=AuthJSFormat(write=write),
                   freshness=Freshness(store, revalidate_after=60))
    with client_for(app) as client, caplog.at_level(logging.WARNING):
        run = client.portal.call
        run(store.create_user, "alice", "USER")
        earlier = session_cookies(flow.sign_in("alice", secret=SECRET))
        assert "auth_time" not in claims_of(token_of(earlier))
        next_second()
        run(revoke_sessions, store, "alice")
        next_second()
        later = session_cookies(flow.sign_in("alice", secret=SECRET))

        response = client.get("/me", headers=cookie_header(earlier))
        assert response.json()["id"] is None
        lines = response.headers.get_list("set-cookie")
        assert deletions(lines) == ([PLAIN] if write else [])

        for _ in range(3):
            response = client.get("/me", headers=cookie_header(later))
            assert response.json()["id"] == "alice"
            lines = response.headers.get_list("set-cookie")
            assert deletions(lines) == []
        if write:  # re-issued once with what it learned; Auth.js reads it back
            first = client.get("/me", headers=cookie_header(later)).headers
            written = apply(later, first.get_list("set-cookie"))
            assert flow.session(written, secret=SECRET)["body"]["user"]["id"] == "alice"
            if written != later:  # a re-issue never invents a sign-in time
                assert "auth_time" not in claims_of(token_of(written))
        csrf = client.get("/auth/session", headers=cookie_header(later)).json()["csrfToken"]
        refreshed = client.post("/auth/session/refresh", headers={
            "cookie": cookie_header(later)["cookie"] + f"; csrftoken={csrf}",
            "x-csrf-token": csrf})
        assert refreshed.status_code == (200 if write else 409)
    warnings = [r for r in caplog.records if "without auth_time" in r.getMessage()]
    assert len(warnings) == 1
    assert "judged by its iat" in warnings[0].getMessage()


# --- item 12: sessions larger than the Python side writes ---------------------------------------


def big_sign_in(flow: AuthJSFlow, length: int, **options: Any) -> dict[str, str]:
    """A real Auth.js sign-in whose session token is about ``length`` characters."""
    blob = "p" * int(length * 0.74 - 400)
    return session_cookies(flow.sign_in("alice", extra={"prefs": blob}, secret=SECRET,
                                         **options))


def test_a_large_authjs_session_reads_and_stays(flow: AuthJSFlow, client_for: Client,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """13,470 characters in 4 chunks, over ``max_cookie_size``: read, never expired; a
    re-issue that does not fit leaves it as Auth.js wrote it, with a warning."""
    cookies = big_sign_in(flow, 13_470)
    assert len(cookies) == 4 and 13_000 < len(token_of(cookies)) < 14_000
    users = Users(alice=("ADMIN", 3))  # revalidation brings a new role: a re-issue
    app = make_app(format=AuthJSFormat(write=True), freshness=Freshness(users))
    client = client_for(app)
    with caplog.at_level(logging.WARNING, logger="asgi_jwt_session"):
        for _ in range(2):
            response = client.get("/me", headers=cookie_header(cookies))
            assert response.status_code == 200
            assert response.json()["id"] == "alice" and response.json()["role"] == "ADMIN"
            assert response.headers.get_list("set-cookie") == []
    messages = [r.getMessage() for r in caplog.records if r.name == "asgi_jwt_session"]
    assert messages and all("not re-issued, left as it is" in m for m in messages)
    assert flow.session(cookies, secret=SECRET)["body"]["user"]["id"] == "alice"


def test_a_token_whose_reissue_does_not_fit_is_no_500(flow: AuthJSFlow, client_for: Client,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """12,233-12,288 characters: read fine; its re-issue (``ver``, ``chk``,
    ``auth_time`` added) would pass the budget. Left as it is: no 500."""
    low, high = 11_500, 12_600
    cookies: dict[str, str] = {}
    while low < high:
        mid = (low + high + 1) // 2
        candidate = big_sign_in(flow, mid)
        if len(token_of(candidate)) <= 12 * 1024:
            low, cookies = mid, candidate
        else:
            high = mid - 1
    assert 12_200 <= len(token_of(cookies)) <= 12 * 1024
    app = make_app(format=AuthJSFormat(write=True), freshness=Freshness(Users(alice=("USER", 1))))
    client = client_for(app)
    with caplog.at_level(logging.WARNING, logger="asgi_jwt_session"):
        response = client.get("/me", headers=cookie_header(cookies))
    assert response.status_code == 200 and response.json()["id"] == "alice"
    assert response.headers.get_list("set-cookie") == []
    assert any("not re-issued" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("write", [False, True])
def test_a_session_over_the_read_cap_is_left_alone(flow: AuthJSFlow, client_for: Client,
                                                   write: bool,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    cookies = big_sign_in(flow, 20_000)
    fmt = AuthJSFormat(write=write, max_token_size=16 * 1024)
    client = client_for(make_app(format=fmt))
    with caplog.at_level(logging.INFO, logger="asgi_jwt_session"):
        response = client.get("/me", headers=cookie_header(cookies))
    assert response.status_code == 200 and response.json()["id"] is None
    assert response.headers.get_list("set-cookie") == []  # Auth.js's session stays
    assert any("not read" in r.getMessage() and "left as it is" in r.getMessage()
               for r in caplog.records)
    # More chunks than it reads (16 KiB: 5), the rest never joined: left alone too.
    many = big_sign_in(flow, 24_000)
    assert len(many) > 5
    with caplog.at_level(logging.INFO, logger="asgi_jwt_session"):
        response = client.get("/me", headers=cookie_header(many))
    assert response.json()["id"] is None and response.headers.get_list("set-cookie") == []
    ours = [r for r in caplog.records if r.name.startswith("asgi_jwt_session")]
    assert "more than 5 chunks, over the 16384 characters" in ours[-1].getMessage()
    # With the default cap (32 KiB) both are read.
    client = client_for(make_app(format=AuthJSFormat(write=write)))
    assert client.get("/me", headers=cookie_header(many)).json()["id"] == "alice"


# --- item 15: a re-issued token keeps Auth.js's session.maxAge ----------------------------------


def test_a_reissue_keeps_the_authjs_max_age(flow: AuthJSFlow, client_for: Client) -> None:
    cookies = session_cookies(flow.sign_in("alice", secret=SECRET, maxAge=3600))
    before = claims_of(token_of(cookies))
    assert before["exp"] - before["iat"] == 3600
    app = make_app(session_routes(), format=AuthJSFormat(write=True),
                   freshness=Freshness(Users(alice=("ADMIN", 2))))  # max_age: 30 days
    client = client_for(app)
    view = client.get("/auth/session", headers=cookie_header(cookies))
    expires = view.json()["session"]["expires"]
    lines = view.headers.get_list("set-cookie")
    session_lines = [line for line in lines if line.startswith(PLAIN)]
    assert len(session_lines) == 1 and "; Max-Age=3600" in session_lines[0]
    after = claims_of(token_of(apply(cookies, session_lines)))
    assert after["exp"] - after["iat"] == 3600 and after["role"] == "ADMIN"
    assert expires == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(after["exp"]))
    # Auth.js reads it and keeps its own maxAge.
    seen = flow.session(apply(cookies, session_lines), secret=SECRET, maxAge=3600)
    assert seen["body"]["user"]["role"] == "ADMIN"

    # A Python max_age shorter than Auth.js's still bounds what Python issues.
    short = make_app(format=AuthJSFormat(write=True), max_age=600,
                     freshness=Freshness(Users(alice=("ADMIN", 2))))
    lines = client_for(short).get("/me", headers=cookie_header(cookies)).headers.get_list(
        "set-cookie")
    assert claims_of(token_of(apply(cookies, lines)))["exp"] - int(time.time()) <= 600
