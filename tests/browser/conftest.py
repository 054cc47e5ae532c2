"""Browser fixtures: one headless Debian Chromium for the session, a fresh context (own
cookies) per test, pointed at pytest-django's live server."""
from __future__ import annotations

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PASSWORD = "pw-123456"  # factories.make_user's default


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def log_in(page):
    """``log_in(user)`` signs in through the admin's login form and lands on the index."""

    def log_in(user, password: str = PASSWORD):
        page.goto("/admin/login/?next=/admin/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_url("**/admin/")
        return page

    return log_in
