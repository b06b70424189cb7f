"""The demo in a real headless Chromium, clicked through as a person would.

One browser for the module, a fresh context (its own cookies) per person. The demo runs
as ``python -m demo`` under uvicorn on a free port with a temp SQLite file. Screenshots
of the main pages go to ``tests/artifacts/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from demo.accounts import DEMO_ACCOUNTS
from tests.chromium import launch, started_playwright
from tests.test_demo_app import DemoServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ACCOUNTS = {account.id: account for account in DEMO_ACCOUNTS}

NewContext = Callable[..., "BrowserContext"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with started_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    server = DemoServer(tmp_path_factory.mktemp("demo"))
    yield server
    server.stop()


@pytest.fixture
def new_context(browser: Browser, server: DemoServer) -> Iterator[NewContext]:
    """Contexts (one per person) on the demo; closed after the test."""
    contexts: list[BrowserContext] = []

    def make(base_url: str = server.url, **options: Any) -> BrowserContext:
        options = {"viewport": {"width": 1200, "height": 800}, **options}
        context = browser.new_context(base_url=base_url, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def path_is(path: str) -> re.Pattern[str]:
    """The page URL's path (and query) is exactly ``path``."""
    return re.compile(rf"^https?://[^/]+{re.escape(path)}$")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"demo-{name}.png", full_page=True)


def sign_in(page: Page, user_id: str, *, from_login_page: bool = False) -> None:
    if not from_login_page:
        page.goto("/login")
    account = ACCOUNTS[user_id]
    page.get_by_label("Email").fill(account.email)
    page.get_by_label("Password").fill(account.password)
    page.get_by_role("button", name="Sign in").click()


def session_cookies(context: BrowserContext) -> list[str]:
    return [cookie["name"] for cookie in context.cookies()
            if cookie["name"] == "session" or cookie["name"].startswith("session.")]


def test_plain_user_is_forbidden_from_the_admin_page(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    page = new_context().new_page()
    page.goto("/")
    expect(page).to_have_url(path_is("/login"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "login")
    sign_in(page, "uma", from_login_page=True)

    expect(page).to_have_url(path_is("/dashboard"))
    expect(page.get_by_role("heading", name="Hello, uma")).to_be_visible()
    expect(page.locator("dd [data-session-role]")).to_have_text("USER")
    expect(page.locator("[data-session-expires]")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    expect(page.locator("#browser-session")).to_contain_text('"role": "USER"')

    output = page.locator("#api-output")
    page.get_by_role("button", name="GET /api/admin/users").click()
    expect(output).to_contain_text("GET /api/admin/users → 403")
    expect(output).to_contain_text('"detail": "Permission denied"')
    page.get_by_role("button", name="Open websocket /ws/org").click()
    expect(output).to_contain_text("closed: 4403 Permission denied")
    page.get_by_role("button", name="GET /api/me").click()
    expect(output).to_contain_text("GET /api/me → 200")
    screenshot(page, "dashboard")

    with page.expect_response(re.compile(r"/admin$")) as answer:
        page.get_by_role("link", name="Admin", exact=True).click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", name="403 · Forbidden")).to_be_visible()
    expect(page.locator("main")).to_contain_text("/admin needs ADMIN or a higher role")
    screenshot(page, "forbidden")


def test_promotion_shows_after_refresh(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    user = new_context().new_page()
    sign_in(user, "ulf")
    expect(user.locator("dd [data-session-role]")).to_have_text("USER")

    admin = new_context().new_page()
    sign_in(admin, "ada")
    admin.get_by_role("link", name="Admin", exact=True).click()
    expect(admin.get_by_role("heading", name="Admin")).to_be_visible()
    row = admin.locator("#user-ulf")
    row.get_by_label("Role for ulf").select_option("ADMIN")
    row.get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status")).to_contain_text("ulf is now ADMIN")
    expect(admin.locator("#user-ulf .role")).to_have_text("ADMIN")
    screenshot(admin, "admin")

    # No reload: the page still shows USER until the button refreshes the session.
    expect(user.locator("dd [data-session-role]")).to_have_text("USER")
    user.get_by_role("button", name="Refresh session").click()
    expect(user.locator("#refresh-status")).to_have_text("Refreshed: your role is ADMIN.")
    expect(user.locator("dd [data-session-role]")).to_have_text("ADMIN")
    expect(user.locator(".pill [data-session-role]")).to_have_text("ADMIN")
    expect(user.locator("#browser-session")).to_contain_text('"role": "ADMIN"')
    expect(user.locator("[data-session-version]")).to_have_text("2")  # was 1
    user.get_by_role("link", name="Admin", exact=True).click()
    expect(user.get_by_role("heading", name="Admin")).to_be_visible()
    expect(user).to_have_url(path_is("/admin"))


def test_role_change_shows_on_the_next_page_load(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    user = new_context().new_page()
    sign_in(user, "olga")
    expect(user.locator("dd [data-session-role]")).to_have_text("ORG_ADMIN")

    admin = new_context().new_page()
    sign_in(admin, "ada")
    admin.goto("/admin")
    admin.locator("#user-olga").get_by_label("Role for olga").select_option("USER")
    admin.locator("#user-olga").get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status")).to_contain_text("olga is now USER")

    user.reload()  # no button: the middleware sees the new session version
    expect(user.locator("dd [data-session-role]")).to_have_text("USER")
    response = user.goto("/org")
    assert response is not None and response.status == 403
    admin.locator("#user-olga").get_by_label("Role for olga").select_option("ORG_ADMIN")
    admin.locator("#user-olga").get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status")).to_contain_text("olga is now ORG_ADMIN")
    user.goto("/org")
    expect(user.get_by_role("heading", name="Organization")).to_be_visible()


def test_refresh_from_the_forbidden_page(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    user = new_context().new_page()
    sign_in(user, "uma")
    user.goto("/org")
    expect(user.get_by_role("heading", name="403 · Forbidden")).to_be_visible()

    admin = new_context().new_page()
    sign_in(admin, "ada")
    admin.goto("/admin")
    admin.locator("#user-uma").get_by_label("Role for uma").select_option("ORG_ADMIN")
    admin.locator("#user-uma").get_by_role("button", name="Save").click()
    expect(admin.get_by_role("status")).to_contain_text("uma is now ORG_ADMIN")

    user.get_by_role("button", name="Refresh session and try again").click()
    expect(user.get_by_role("heading", name="Organization")).to_be_visible()
    expect(user.locator(".pill [data-session-role]")).to_have_text("ORG_ADMIN")
    screenshot(user, "org")


def test_sign_out_clears_every_session_cookie(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    context = new_context()
    page = context.new_page()
    sign_in(page, "olga")
    expect(page).to_have_url(path_is("/dashboard"))
    assert session_cookies(context) == ["session"]

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(path_is("/login?signed_out"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    assert session_cookies(context) == []
    page.goto("/dashboard")
    expect(page).to_have_url(path_is("/login?next=%2Fdashboard"))


def test_tampered_cookie_lands_on_the_sign_in_page(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    context = new_context()
    page = context.new_page()
    sign_in(page, "uma")
    expect(page).to_have_url(path_is("/dashboard"))
    [cookie] = [c for c in context.cookies() if c["name"] == "session"]
    value = cookie["value"]
    middle = len(value) // 2
    tampered = value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1:]
    context.add_cookies([{**cookie, "value": tampered}])  # type: ignore[typeddict-item]

    response = page.goto("/dashboard")
    assert response is not None and response.status == 200
    expect(page).to_have_url(path_is("/login?next=%2Fdashboard"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert session_cookies(context) == []  # the bad cookie was expired

    context.add_cookies([{**cookie, "value": "garbage"}])  # type: ignore[typeddict-item]
    page.goto("/admin")
    expect(page).to_have_url(path_is("/login?next=%2Fadmin"))


def test_next_returns_to_the_page_first_asked_for(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    page = new_context().new_page()
    page.goto("/org")
    expect(page).to_have_url(path_is("/login?next=%2Forg"))
    expect(page.locator(".note")).to_have_text("Sign in to see /org.")
    sign_in(page, "olga", from_login_page=True)
    expect(page).to_have_url(path_is("/org"))
    expect(page.get_by_role("heading", name="Organization")).to_be_visible()


def test_https_secure_cookie_refresh_and_websocket(
        browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = DemoServer(tmp_path, https=True)
    context = browser.new_context(base_url=server.url, ignore_https_errors=True)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        sign_in(page, "olga")
        expect(page).to_have_url(path_is("/dashboard"))
        cookies = {cookie["name"]: cookie for cookie in context.cookies()}
        assert cookies["session"]["secure"] is True
        assert cookies["session"]["httpOnly"] is True
        assert cookies["csrftoken"]["secure"] is True
        page.get_by_role("button", name="Refresh session").click()
        expect(page.locator("#refresh-status")).to_have_text(
            "Refreshed: your role is ORG_ADMIN.")
        page.get_by_role("button", name="Open websocket /ws/org").click()
        output = page.locator("#api-output")
        expect(output).to_contain_text('message: {"hello":"olga","role":"ORG_ADMIN"}')
        expect(output).to_contain_text("closed: 1000 bye")
    finally:
        context.close()
        server.stop()


def test_narrow_screen_does_not_overflow(new_context: NewContext) -> None:
    """At 390 px (a phone) no page is wider than the screen, and nothing is a 404
    (the favicon included)."""
    from playwright.sync_api import Response, expect

    context = new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    missing: list[str] = []

    def check(response: Response) -> None:
        if response.status == 404:
            missing.append(response.url)

    page.on("response", check)
    page.goto("/login")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    widths = {"/login": page.evaluate("document.documentElement.scrollWidth")}
    sign_in(page, "ada", from_login_page=True)
    expect(page).to_have_url(path_is("/dashboard"))
    for path in ("/dashboard", "/admin", "/org", "/sessions", "/account/password"):
        page.goto(path)
        expect(page.locator("h1")).to_be_visible()
        widths[path] = page.evaluate("document.documentElement.scrollWidth")
    screenshot(page, "narrow")
    assert all(width <= 390 for width in widths.values()), widths
    page.goto("/dashboard")
    page.wait_for_load_state("networkidle")
    assert missing == []


def test_active_sessions_sign_out_the_other_browser(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    laptop = new_context(user_agent="Laptop browser").new_page()
    sign_in(laptop, "olga")
    laptop.get_by_role("link", name="Sessions").click()
    expect(laptop.get_by_role("heading", name="Active sessions")).to_be_visible()
    rows = laptop.locator("[data-session-row]")
    # Earlier tests left olga signed in elsewhere on this server: start from this one.
    laptop.get_by_role("button", name="Sign out all other devices").click()
    expect(rows).to_have_count(1)
    phone = new_context(user_agent="Phone browser").new_page()
    sign_in(phone, "olga")
    expect(phone).to_have_url(path_is("/dashboard"))
    laptop.reload()
    expect(rows).to_have_count(2)
    expect(laptop.locator("[data-current]")).to_contain_text("Laptop browser")
    expect(laptop.locator("[data-current]")).to_contain_text("this device")
    screenshot(laptop, "sessions")
    rows.filter(has_text="Phone browser").get_by_role("button", name="Sign out").click()
    expect(laptop.get_by_role("status")).to_contain_text("That device is signed out")
    expect(rows).to_have_count(1)

    phone.reload()  # its next request: the sign-in page
    expect(phone).to_have_url(path_is("/login?next=%2Fdashboard"))
    expect(phone.get_by_role("heading", name="Sign in")).to_be_visible()

    # Sign in on the phone again, then "sign out all other devices" from the laptop.
    sign_in(phone, "olga", from_login_page=True)
    expect(phone).to_have_url(path_is("/dashboard"))
    laptop.reload()
    expect(rows).to_have_count(2)
    laptop.get_by_role("button", name="Sign out all other devices").click()
    expect(laptop.get_by_role("status")).to_contain_text("Every other device is signed out")
    expect(rows).to_have_count(1)
    phone.get_by_role("link", name="Org admin").click()
    expect(phone).to_have_url(path_is("/login?next=%2Forg"))
    laptop.goto("/org")
    expect(laptop.get_by_role("heading", name="Organization")).to_be_visible()


def test_password_change_asks_for_the_password_again(
        browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    server = DemoServer(tmp_path, env={"FRESH_LOGIN_AGE": "1"})
    contexts = [browser.new_context(base_url=server.url) for _ in range(2)]
    try:
        for context in contexts:
            context.set_default_timeout(10_000)
        other, page = (context.new_page() for context in contexts)
        sign_in(other, "uma")
        expect(other).to_have_url(path_is("/dashboard"))
        sign_in(page, "uma")
        expect(page).to_have_url(path_is("/dashboard"))
        page.wait_for_timeout(2100)  # the sign-in is no longer fresh
        page.get_by_role("link", name="Password").click()
        expect(page).to_have_url(path_is("/login?next=%2Faccount%2Fpassword&reauth=1"))
        expect(page.get_by_role("heading", name="Confirm your password")).to_be_visible()
        screenshot(page, "confirm-password")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("alert")).to_have_text("Wrong password.")
        page.get_by_label("Password").fill(ACCOUNTS["uma"].password)
        page.get_by_role("button", name="Confirm").click()
        expect(page).to_have_url(path_is("/account/password"))
        page.get_by_label("New password").fill("uma-new-password")
        page.get_by_role("button", name="Change password").click()
        expect(page).to_have_url(path_is("/sessions"))
        expect(page.get_by_role("status")).to_contain_text("Password changed")
        expect(page.locator("[data-session-row]")).to_have_count(1)

        other.reload()  # the other browser was signed out by the change
        expect(other).to_have_url(path_is("/login?next=%2Fdashboard"))
        other.get_by_label("Email").fill(ACCOUNTS["uma"].email)
        other.get_by_label("Password").fill("uma-new-password")
        other.get_by_role("button", name="Sign in").click()
        expect(other).to_have_url(path_is("/dashboard"))

        # The sign-in page no longer offers the seeded password: `-`, and no Use.
        other.goto("/login")
        row = other.locator("table.accounts tr", has_text=ACCOUNTS["uma"].email)
        expect(row.locator("td").nth(2)).to_have_text("-")  # the Password column
        expect(row.get_by_role("button", name="Use")).to_have_count(0)
        expect(other.locator("body")).not_to_contain_text(ACCOUNTS["uma"].password)
        ulf = other.locator("table.accounts tr", has_text=ACCOUNTS["ulf"].email)
        expect(ulf.locator("td").nth(2)).to_have_text(ACCOUNTS["ulf"].password)
    finally:
        for context in contexts:
            context.close()
        server.stop()


def test_admin_views_as_a_user(new_context: NewContext) -> None:
    from playwright.sync_api import expect

    page = new_context().new_page()
    sign_in(page, "ada")
    page.goto("/admin")
    page.get_by_role("button", name="View as ulf").click()
    expect(page).to_have_url(path_is("/dashboard"))
    expect(page.get_by_role("heading", name="Hello, ulf")).to_be_visible()
    banner = page.locator("[data-impersonating]")
    expect(banner).to_contain_text("You are ada, viewing the app as ulf")
    expect(page.locator("#browser-session")).to_contain_text('"actor"')
    screenshot(page, "view-as")
    page.get_by_role("button", name="Back to ada").click()
    expect(page).to_have_url(path_is("/admin"))
    expect(page.get_by_role("heading", name="Admin")).to_be_visible()
    expect(banner).to_have_count(0)
    expect(page.locator(".pill [data-session-id]")).to_have_text("ada")


PHONE = {"width": 390, "height": 844}


def on_screen(page: Page, name: str | re.Pattern[str], count: int) -> None:
    """Each of the ``count`` buttons called ``name`` in the page's tables lies inside the
    phone's screen: nothing to scroll sideways to reach it (scrolling down is fine)."""
    buttons = page.locator("main table").get_by_role(
        "button", name=name, exact=isinstance(name, str))
    found = buttons.count()
    assert found == count, (name, found)
    for index in range(found):
        button = buttons.nth(index)
        top = button.evaluate("b => b.getBoundingClientRect().top + window.scrollY")
        page.evaluate("y => window.scrollTo(0, y)", max(0, top - PHONE["height"] / 2))
        box = button.bounding_box()
        assert box is not None, (name, index)
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, index, box)
        assert box["y"] >= 0 and box["y"] + box["height"] <= PHONE["height"], (name, index, box)
    sideways = page.evaluate("""() => [...document.querySelectorAll('*')]
        .filter(e => e.scrollWidth > e.clientWidth + 1
                     && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)).length""")
    assert sideways == 0, f"{sideways} element(s) scroll sideways"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def test_phone_every_button_is_on_the_screen(browser: Browser, tmp_path: Path) -> None:
    """At 390x844, the sign-in page's Use, the admin's Save and View as, and each
    device's Sign out are on the screen; Use signs in; refusing to demote the last admin
    reads as a refusal (an alert in the error style), not as a success."""
    from playwright.sync_api import expect

    server = DemoServer(tmp_path)  # its own database: ada is the only admin
    context = browser.new_context(base_url=server.url, viewport=PHONE)
    try:
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.goto("/login")
        on_screen(page, "Use", count=len(DEMO_ACCOUNTS))
        screenshot(page, "phone-login")
        row = page.locator("table.accounts tr", has_text=ACCOUNTS["ada"].email)
        row.get_by_role("button", name="Use").click()
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(path_is("/dashboard"))

        page.goto("/admin")
        on_screen(page, "Save", count=len(DEMO_ACCOUNTS))
        on_screen(page, re.compile(r"^View as "), count=len(DEMO_ACCOUNTS) - 1)  # not ada
        screenshot(page, "phone-admin")

        page.get_by_label("Role for ada").select_option("USER")
        page.locator("#user-ada").get_by_role("button", name="Save").click()
        expect(page).to_have_url(path_is("/admin"))
        refusal = page.get_by_role("alert")
        expect(refusal).to_have_text(
            "Not changed: ada is the last admin. Make someone else an admin first.")
        expect(refusal).to_have_class(re.compile(r"\berror\b"))
        expect(page.get_by_role("status")).to_have_count(0)  # no success box
        colour = refusal.evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(180, 35, 24)", colour  # --danger
        expect(page.locator("#user-ada .role")).to_have_text("ADMIN")

        other = browser.new_context(base_url=server.url, viewport=PHONE,
                                    user_agent="Second phone")
        try:
            sign_in(other.new_page(), "ada")
        finally:
            other.close()
        page.goto("/sessions")
        on_screen(page, "Sign out", count=2)
        screenshot(page, "phone-sessions")
    finally:
        context.close()
        server.stop()
