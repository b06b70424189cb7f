"""The headless Chromium of the browser tests (``/usr/bin/chromium``, driven by
Playwright's sync API): ``started_playwright`` starts Playwright, ``launch`` starts
Chromium with the shared arguments; both count as unavailable (a skip, a failure under
CI=true) when Playwright or Chromium is missing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
]


@contextmanager
def started_playwright() -> Iterator[Playwright]:
    """Playwright, once the package and the Chromium binary are found."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright (Python package) is not installed")
        raise
    if not Path(CHROMIUM).exists():
        unavailable(f"Chromium not found at {CHROMIUM}")
    with sync_playwright() as playwright:
        yield playwright


def launch(playwright: Playwright, *args: str) -> Browser:
    """Headless Chromium with :data:`CHROMIUM_ARGS` and ``args``."""
    from playwright.sync_api import Error

    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *args])
    except Error as exc:
        unavailable(f"Chromium would not start: {exc}")
        raise


def trusting(spki: str) -> str:
    """The argument that has Chromium trust the certificate whose public key hash (base64
    SHA-256 of its SubjectPublicKeyInfo) is ``spki``."""
    return f"--ignore-certificate-errors-spki-list={spki}"
