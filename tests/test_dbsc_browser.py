"""Device Bound Session Credentials in a real headless Chromium.

Chromium (``/usr/bin/chromium``, driven by Playwright) with DBSC and its software keys
turned on, against tests/dbsc_app.py under uvicorn over TLS. The certificate is made
here and trusted by its public key hash (Chromium ignores DBSC on a connection with a
certificate error). The bound cookie lives a few seconds, so the refreshes happen
during the test; the app records every request it receives, refreshes included.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from asgi_jwt_session.tokens import TokenCodec
from support.servers import free_port, wait_for_port
from tests.chromium import launch, started_playwright, trusting
from tests.test_demo_app import self_signed_certificate

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright

BOUND = 6  # seconds a bound cookie lives here
LEEWAY = 1  # the app's clock leeway
ROOT = Path(__file__).resolve().parent.parent
DBSC_FEATURES = ("--enable-features=DeviceBoundSessions,"
                 "EnableBoundSessionCredentialsSoftwareKeysForManualTesting")
REFRESH = "/auth/dbsc/refresh"
REGISTER = "/auth/dbsc/register"
REFRESH_COOKIE = "__Secure-session-dbsc"


def spki_hash(cert_file: Path) -> str:
    """base64 of the SHA-256 of the certificate's SubjectPublicKeyInfo (DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    der = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


class Server:
    """tests/dbsc_app.py under uvicorn over TLS, on a free port."""

    def __init__(self, directory: Path) -> None:
        self.cert_file, key_file = self_signed_certificate(directory)
        self.spki = spki_hash(self.cert_file)
        port = free_port()
        self.url = f"https://localhost:{port}"
        self.secret = secrets.token_urlsafe(32)
        env = {**os.environ, "DBSC_DATABASE": f"sqlite:///{directory / 'dbsc.sqlite3'}",
               "DBSC_SECRET": self.secret, "DBSC_BOUND_LIFETIME": str(BOUND),
               "DBSC_LEEWAY": str(LEEWAY)}
        self.log_path = directory / "server.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.dbsc_app:app", "--host", "127.0.0.1",
             "--port", str(port), "--ssl-certfile", str(self.cert_file),
             "--ssl-keyfile", str(key_file), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, timeout=20)
            wait_until(lambda: self.get("/events").status_code == 200, 20)
        except BaseException:
            self.stop()
            raise

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, verify=str(self.cert_file))

    def post(self, path: str) -> httpx.Response:
        return httpx.post(self.url + path, verify=str(self.cert_file))

    def events(self, agent: str) -> list[dict[str, Any]]:
        return [event for event in self.get("/events").json() if event["agent"] == agent]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


def wait_until(condition: Callable[[], object], timeout: float) -> None:
    """Poll ``condition`` until it holds (a wait, not a timed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("dbsc"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with started_playwright() as playwright:
        yield playwright


@pytest.fixture(scope="module")
def dbsc_browser(playwright: Playwright, server: Server) -> Iterator[Browser]:
    browser = launch(playwright, trusting(server.spki), DBSC_FEATURES)
    yield browser
    browser.close()


@pytest.fixture
def contexts(dbsc_browser: Browser, server: Server) -> Iterator[Callable[..., BrowserContext]]:
    made: list[BrowserContext] = []

    def make(agent: str, **options: Any) -> BrowserContext:
        context = dbsc_browser.new_context(base_url=server.url, **options)
        context.add_cookies([{"name": "who", "value": agent, "url": server.url}])
        context.set_default_timeout(15_000)
        made.append(context)
        return context

    yield make
    for context in made:
        context.close()


def who(context: BrowserContext) -> dict[str, Any]:
    """``GET /me`` as a page navigation (so DBSC may hold it for a refresh)."""
    page = context.pages[0] if context.pages else context.new_page()
    response = page.goto("/me")
    assert response is not None
    data: dict[str, Any] = response.json()
    return data


def registered(server: Server, agent: str) -> dict[str, Any]:
    """Wait for the agent's successful registration; its event."""
    def done() -> list[dict[str, Any]]:
        return [event for event in server.events(agent)
                if event["path"] == REGISTER and event.get("status") == 200]
    wait_until(done, 15)
    return done()[0]


def test_sign_in_registers_and_refreshes_keep_the_user_signed_in(
        server: Server, contexts: Callable[..., BrowserContext]) -> None:
    agent = "victim-1"
    context = contexts(agent)
    context.new_page().goto("/login")
    registration = registered(server, agent)
    [line] = [line for line in registration["set_cookie"] if line.startswith("session=")]
    # The bound cookie lives bound_lifetime (one second less when the response was
    # written in the next second than the request's).
    assert line.endswith((f"; Max-Age={BOUND}", f"; Max-Age={BOUND - 1}"))
    assert registration["proof"]  # the browser's signed proof
    me = who(context)
    assert me["user"] == "alice" and me["bound"]
    rows = server.get("/sessions").json()
    assert {"id": me["jti"], "device_bound": True} in rows

    time.sleep(BOUND + 1)  # idle: the bound cookie expires in the browser
    asked_at = time.time()
    me = who(context)
    assert me["user"] == "alice"  # the navigation waited for the refresh
    events = server.events(agent)
    [navigation] = [event for event in events if event["path"] == "/me"
                    and event["at"] >= asked_at - 0.5]
    refreshes = [event for event in events if event["path"] == REFRESH
                 and event["at"] >= asked_at - 0.5 and event["at"] <= navigation["at"]]
    # A challenge (403), then the signed retry (200) made while the browser had no
    # session cookie, then the held request, with the new cookie. (Chromium may add
    # refreshes ahead of expiry: those carry the cookie.)
    held = [event for event in refreshes if event["status"] == 200 and event["proof"]
            and "session" not in event["cookies"]]
    assert held, refreshes
    assert [event for event in refreshes if event["status"] == 403
            and not event["proof"] and event["at"] <= held[0]["at"]]
    assert held[0]["session_id"] == me["jti"]
    assert "session" in navigation["cookies"] and navigation["at"] >= held[0]["at"]


def test_a_stolen_cookie_works_at_most_until_the_bound_cookie_expires(
        server: Server, contexts: Callable[..., BrowserContext]) -> None:
    victim = contexts("victim-2")
    victim.new_page().goto("/login")
    registered(server, "victim-2")
    me = who(victim)
    # Every cookie copied off the device, into a browser without its key. The copy of
    # the session cookie keeps its expiry in one thief's jar; the other thief removes
    # the expiry (a tool that ignores Max-Age).
    cookies = [cookie for cookie in victim.cookies() if cookie["name"] != "who"]
    copied_at = time.time()
    [stolen] = [cookie["value"] for cookie in cookies if cookie["name"] == "session"]
    expires_at = TokenCodec(server.secret).decode(stolen, now=int(copied_at))["exp"]
    thieves = {"thief-as-is": cookies,
               "thief-no-expiry": [{**cookie, "expires": -1} for cookie in cookies]}
    browsers = {}
    for agent, jar in thieves.items():
        thief = browsers[agent] = contexts(agent, ignore_https_errors=True)
        thief.add_cookies(jar)  # type: ignore[arg-type]
        assert who(thief)["user"] == "alice"  # the copy works at first
    signed_in = set(browsers)
    while signed_in:  # both thieves at once, until each is signed out
        assert time.time() < copied_at + BOUND + LEEWAY + 30
        signed_in -= {agent for agent in signed_in if who(browsers[agent])["user"] != "alice"}
        time.sleep(0.25)
    lifetimes = {}
    for agent, thief in browsers.items():
        served = [event for event in server.events(agent) if event["path"] == "/me"
                  and event.get("status") == 200]
        # The server never accepted the copy past the bound token's expiry (+ leeway).
        assert served[-1]["at"] <= expires_at + LEEWAY + 1
        lifetimes[agent] = served[-1]["at"] - copied_at
        # The thief's browser has no DBSC session: it never asks for a refresh; asking
        # itself, it gets a challenge it has no key to answer.
        assert not [event for event in server.events(agent) if event["path"] == REFRESH]
        asked = thief.request.post(REFRESH, headers={"Sec-Secure-Session-Id": me["jti"]})
        assert asked.status == 403
        assert who(thief)["user"] is None
    print(f"\nstolen-copy lifetime after the copy (bound_lifetime={BOUND}s, leeway={LEEWAY}s): "
          + ", ".join(f"{agent} {seconds:.1f}s" for agent, seconds in lifetimes.items()))
    # Meanwhile the device itself stays signed in, refresh after refresh.
    assert who(victim)["user"] == "alice"


def test_revocation_makes_the_next_refresh_fail(
        server: Server, contexts: Callable[..., BrowserContext]) -> None:
    agent = "victim-3"
    context = contexts(agent)
    context.new_page().goto("/login")
    registered(server, agent)
    me = who(context)
    revoked_at = time.time()  # before the revocation: a refresh racing it is counted too
    assert server.post(f"/revoke?id={me['jti']}").json() == {"found": True}
    time.sleep(BOUND + 1)
    assert who(context)["user"] is None

    def refused() -> list[dict[str, Any]]:
        return [event for event in server.events(agent) if event["path"] == REFRESH
                and event["at"] >= revoked_at and event["proof"] and event["status"] == 401]

    deadline = time.time() + 15  # a busy machine may hold the browser's refresh back
    while not refused() and time.time() < deadline:
        time.sleep(0.2)
    assert refused(), server.events(agent)
    refused_at = refused()[0]["at"]
    assert who(context)["user"] is None  # and it stays signed out
    # {"continue": false} ended the browser's DBSC session: it asks for no more refreshes.
    assert not [event for event in server.events(agent)
                if event["path"] == REFRESH and event["at"] > refused_at]


def test_chromium_without_dbsc_keeps_a_normal_session(playwright: Playwright,
                                                      server: Server) -> None:
    browser = launch(playwright, trusting(server.spki))
    try:
        agent = "no-dbsc"
        context = browser.new_context(base_url=server.url)
        context.add_cookies([{"name": "who", "value": agent, "url": server.url}])
        context.new_page().goto("/login")
        me = who(context)
        assert me["user"] == "alice" and not me["bound"]
        [session] = [cookie for cookie in context.cookies() if cookie["name"] == "session"]
        assert session["expires"] > time.time() + 29 * 24 * 3600  # the usual 30 days
        time.sleep(BOUND + 1)
        assert who(context)["user"] == "alice"
        assert not [event for event in server.events(agent)
                    if event["path"] in (REGISTER, REFRESH)]
    finally:
        browser.close()
