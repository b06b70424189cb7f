"""The demo's https mode (``python -m demo --https``): its own self-signed certificate,
device binding on, and the "device-bound" badge on the active-sessions page, in a
real headless Chromium with DBSC."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.tls import DBSC_FLAGS, self_signed_certificate
from support.servers import free_port
from tests.chromium import launch, started_playwright, trusting
from tests.test_dbsc_browser import spki_hash, wait_until
from tests.test_demo_browser import sign_in

ROOT = Path(__file__).resolve().parent.parent


def test_the_certificate_is_for_localhost_and_its_hash_is_what_chromium_takes(
        tmp_path: Path) -> None:
    from cryptography import x509

    cert_file, key_file, spki = self_signed_certificate(tmp_path, "127.0.0.1")
    assert spki == spki_hash(cert_file)
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert "localhost" in names.value.get_values_for_type(x509.DNSName)
    assert key_file.stat().st_mode & 0o077 == 0


class HttpsDemo:
    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{directory / 'demo.sqlite3'}",
               "SESSION_SECRET": secrets.token_urlsafe(32)}
        self.log_path = directory / "demo.log"
        self.log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo", "--https", "--port", str(self.port),
             "--log-level", "warning"], cwd=ROOT, env=env, stdout=self.log,
            stderr=subprocess.STDOUT)
        self.url = f"https://localhost:{self.port}"

        def spki() -> str | None:
            match = re.search(r"--ignore-certificate-errors-spki-list=(\S+)",
                              self.log_path.read_text())
            return match.group(1) if match else None

        try:
            wait_until(lambda: self.process.poll() is None and spki(), 20)
            self.spki = str(spki())
            wait_until(lambda: httpx.get(f"{self.url}/login", verify=False).status_code == 200,
                       20)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpsDemo]:
    demo = HttpsDemo(tmp_path_factory.mktemp("demo-https"))
    yield demo
    demo.stop()


@pytest.mark.browser
def test_a_sign_in_over_the_https_demo_is_device_bound(demo: HttpsDemo) -> None:
    assert "device binding (DBSC) on" in demo.log_path.read_text()
    with started_playwright() as playwright:
        from playwright.sync_api import expect

        browser = launch(playwright, DBSC_FLAGS, trusting(demo.spki))
        try:
            context = browser.new_context(base_url=demo.url)
            context.set_default_timeout(15_000)
            page = context.new_page()
            sign_in(page, "uma")
            expect(page.get_by_role("heading", name="Hello, uma")).to_be_visible()

            def badge() -> bool:
                page.goto("/sessions")
                return page.locator("[data-current] [data-device-bound]").count() == 1

            wait_until(badge, 15)  # the browser registers its key just after sign-in
            expect(page.locator("[data-current] [data-device-bound]")).to_have_text(
                "device-bound")
            cookies = {cookie["name"]: cookie for cookie in context.cookies()}
            assert "__Secure-session-dbsc" in cookies
        finally:
            browser.close()
