"""Browser fixtures: one headless Debian Chromium for the session, a fresh context (own
cookies) per test, pointed at pytest-django's live server."""
from __future__ import annotations

from pathlib import Path

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


SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"  # git-ignored, as all of var/
BLOCKING_IMPACTS = {"serious", "critical"}


@pytest.fixture
def screenshot(page, request):
    """``screenshot("01-signed-up")`` saves the page under var/screenshots/<test name>/."""
    folder = SCREENSHOTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)

    def screenshot(name: str, on=None):
        (on or page).screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return screenshot


@pytest.fixture(scope="session")
def axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


@pytest.fixture
def assert_accessible(axe):
    """``assert_accessible(page)`` runs axe-core on the page as it is and fails on any
    serious or critical violation, naming the rule and the elements."""

    def assert_accessible(page):
        results = axe.run(page)
        blocking = [
            f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']]}"
            for v in results.response["violations"] if v["impact"] in BLOCKING_IMPACTS
        ]
        assert not blocking, f"{page.url}:\n" + "\n".join(blocking)

    return assert_accessible
