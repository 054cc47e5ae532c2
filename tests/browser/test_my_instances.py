"""A customer looks after an installed integration in a real browser: runs a timer now (the
queued run is executed here as a worker would), sees the run in the list and the chart,
calls an RPC handler through its form, disables and enables the instance, upgrades it to
version 2 after reading its notes, and uninstalls it. Every page passes axe-core; the
instance page fits a phone's width. Screenshots go to var/screenshots/<test>/."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from marketplace.choices import Role, RunStatus
from marketplace.models import HandlerRun, Instance
from marketplace.services.installs import install_version

from .. import factories
from ..test_instance_pages import SECRET, publish
from .conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def log_in(page, user):
    page.goto("/accounts/login/")
    page.get_by_label("Username or e-mail").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("navigation", name="Account")).to_contain_text(user.username)


FITS = """() => [document.documentElement, ...document.querySelectorAll('.table-wrap')]
  .every(el => el.scrollWidth <= el.clientWidth + 1)"""


def fits_a_phone(page) -> bool:
    """At a phone's width nothing scrolls sideways: neither the page nor a table in it."""
    page.set_viewport_size({"width": 390, "height": 844})
    return page.evaluate(FITS)


def test_a_customer_runs_calls_upgrades_and_uninstalls_an_instance(page, acme, globex, screenshot, assert_accessible):
    integration = factories.make_integration(acme, name="Printer sync")
    customer = factories.make_user("gina")
    factories.add_member(customer, globex, Role.MEMBER)
    instance = install_version(version=publish(integration), organization=globex, name="Plant 1",
                               config={"site": "Plant 1", "apiKey": SECRET}, user=customer)
    log_in(page, customer)

    # 1. My instances, from the navigation.
    page.get_by_role("navigation", name="Site").get_by_role("link", name="My instances").click()
    row = page.locator('tr[data-instance="Plant 1"]')
    expect(row).to_contain_text("Printer sync")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("No runs yet")
    assert_accessible(page)
    screenshot("01-my-instances")

    # 2. Run the timer now; a worker executes the queued run.
    row.get_by_role("link", name="Plant 1", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Plant 1")
    page.get_by_role("button", name="Run tick now").click()
    expect(page.locator(".messages")).to_contain_text("of tick is queued")
    from runtime.worker import process_run

    run = HandlerRun.objects.get(instance=instance, handler="tick")
    assert process_run(run.pk) == "executed"
    page.reload()
    run_row = page.locator(f'tr[data-run="{run.pk}"]')
    expect(run_row).to_contain_text("Succeeded")
    expect(run_row).to_contain_text("ms")
    expect(page.get_by_role("img", name="Runs per hour over the last 24 hours")).to_be_visible()
    expect(page.locator('rect[data-status="succeeded"][data-count="1"]')).to_have_count(1)
    page.get_by_text(f"Logs and result of run #{run.pk}").click()
    expect(page.locator(".logs")).to_contain_text("ticked")
    assert SECRET not in page.content()
    assert_accessible(page)
    screenshot("02-instance-after-a-run")

    # 3. Call the RPC handler through its form.
    page.get_by_label("Input of echo (JSON)").fill('{"n": 21}')
    page.get_by_role("button", name="Call echo").click()
    result = page.get_by_test_id("rpc-result")
    expect(result).to_contain_text("Succeeded")
    expect(result).to_contain_text('"doubled": 42')
    assert_accessible(page)
    screenshot("03-rpc-result")

    # 4. The webhook URL names the host, with a copy button.
    webhook = f"{page.url.split('/instances/')[0]}/hooks/{instance.webhook_token}/order.created"
    expect(page.locator("#webhook-1")).to_have_text(webhook)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    copy = page.get_by_role("button", name="Copy the URL of order.created")
    copy.click()
    expect(copy).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == webhook

    # 5. A phone's width: nothing scrolls sideways, on this page or the list.
    assert fits_a_phone(page)
    assert_accessible(page)
    screenshot("04-phone-width")
    page.goto("/instances/")
    assert fits_a_phone(page)
    screenshot("04-phone-width-list")
    page.goto(f"/instances/{instance.pk}/")
    page.set_viewport_size({"width": 1280, "height": 900})

    # 6. Disable, then enable.
    page.get_by_role("button", name="Disable").click()
    expect(page.locator(".messages")).to_contain_text("Plant 1 is disabled.")
    expect(page.locator("p.meta .state")).to_have_text("Disabled")
    page.get_by_role("button", name="Enable").click()
    expect(page.locator(".messages")).to_contain_text("Plant 1 is enabled.")

    # 7. Version 2 is published: the badge, its notes, the upgrade.
    publish(integration, notes="Now with colour printing")
    page.goto("/instances/")
    page.get_by_role("link", name="Upgrade available for Plant 1: version 2").click()
    expect(page.locator("#notes-2")).to_contain_text("Now with colour printing")
    assert_accessible(page)
    screenshot("05-upgrade")
    page.get_by_role("button", name="Upgrade").click()
    expect(page.locator(".messages")).to_contain_text("Plant 1 now runs version 2.")
    assert Instance.objects.get(pk=instance.pk).version.number == 2

    # 8. Uninstall, after confirming.
    page.get_by_role("link", name="Uninstall").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Uninstall Plant 1?")
    assert_accessible(page)
    screenshot("06-uninstall-confirm")
    page.get_by_role("button", name="Uninstall").click()
    expect(page.locator(".messages")).to_contain_text("Plant 1 is uninstalled.")
    expect(page.locator("main")).to_contain_text("Your organizations have no instances yet")
    assert not Instance.objects.filter(pk=instance.pk).exists()
    assert not HandlerRun.objects.filter(status=RunStatus.QUEUED).exists()
    screenshot("07-no-instances")
