"""The install wizard and the devices pages in a real browser: a customer signs up, adds
an HTTP device pointing at a local test server, tests its connection, installs an
integration through the wizard (config from its configSchema and the device binding) and
lands on the instance's page. axe-core finds no serious or critical violation on these
pages, and the wizard fits a phone's width. Screenshots go to var/screenshots/<test>/."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from marketplace.models import Instance
from tests import factories
from tests.web.conftest import DeviceServer

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-Long-pass-phrase-42"

MANIFEST = {
    "name": "label-printer", "title": "Label printer",
    "configSchema": {
        "type": "object",
        "required": ["site", "apiKey"],
        "properties": {
            "site": {"type": "string", "title": "Site name", "description": "Printed on every label"},
            "apiKey": {"type": "string", "title": "API key", "format": "password"},
            "copies": {"type": "integer", "title": "Copies", "minimum": 1, "default": 1},
            "duplex": {"type": "boolean", "title": "Print both sides"},
            "paper": {"title": "Paper", "enum": ["A4", "Letter"], "default": "A4"},
            "tags": {"type": "array", "title": "Tags", "items": {"type": "string"}},
            "tray": {"type": "object", "title": "Tray", "properties": {"number": {"type": "integer", "title": "Tray number"}}},
        },
    },
    "resources": {"printer": {"kind": "http", "description": "The label printer's web service"}},
    "permissions": ["device.http", "log"],
    "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "5m"}}},
}
FILES = {"main.lua": 'function sync(ctx, input)\n  ctx.log.info("synced")\n  return { ok = true }\nend\n'}


@pytest.fixture
def device_server():
    server = DeviceServer()
    yield server
    server.close()


@pytest.fixture
def integration(db):
    publisher = factories.make_org("Labelworks")
    integration = factories.make_integration(publisher, name="Label printer", slug="label-printer")
    factories.make_published(integration, manifest=MANIFEST, files=FILES)
    return integration


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_add_a_device_test_it_and_install_through_the_wizard(page, integration, device_server, screenshot,
                                                              assert_accessible):
    # 1. Sign up.
    page.goto("/accounts/signup/")
    page.get_by_label("Organization name").fill("Nina Widgets")
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Email").fill("nina@example.com")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url("**/organizations/nina-widgets/")

    # 2. Add an HTTP device pointing at the local test server.
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Devices").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Devices")
    assert_accessible(page)
    screenshot("01-no-devices")
    page.get_by_role("link", name="Add HTTP device").click()
    expect(page.get_by_label("DSN")).to_have_count(0)
    page.get_by_label("Device name").fill("Front printer")
    page.get_by_label("Base URL").fill(device_server.url)
    page.get_by_label("Bearer token").fill("printer-token-1")
    assert_accessible(page)
    screenshot("02-add-device")
    page.get_by_role("button", name="Add device").click()
    page.wait_for_url("**/devices/")
    row = page.locator('tr[data-device="Front printer"]')
    expect(row).to_contain_text(device_server.url)
    assert "printer-token-1" not in page.content()

    # 3. Test its connection: a HEAD reaches the server with the device's token.
    row.get_by_role("button", name="Test connection of Front printer").click()
    expect(page.get_by_role("status")).to_contain_text("Front printer: connection works (the device answered HTTP 200)")
    assert device_server.requests[-1]["method"] == "HEAD"
    assert device_server.requests[-1]["headers"]["Authorization"] == "Bearer printer-token-1"
    assert_accessible(page)
    screenshot("03-connection-works")

    # 4. The integration's page offers Install; the wizard is built from its configSchema.
    page.goto("/integrations/label-printer/")
    page.get_by_role("link", name="Install version 1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Install Label printer")
    expect(page.get_by_label("Copies")).to_have_value("1")
    expect(page.get_by_label("Paper")).to_have_value('"A4"')
    expect(page.get_by_role("group", name="Tray")).to_be_visible()
    assert_accessible(page)
    screenshot("04-wizard")

    # 5. A refusal of the install service lands on its field; nothing is installed.
    page.get_by_label("Copies").fill("0")
    page.get_by_role("button", name="Install").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was installed")
    expect(page.locator("#id_config\\.site_error, .errorlist").first).to_be_visible()
    assert Instance.objects.count() == 0
    assert_accessible(page)
    screenshot("05-wizard-errors")

    # 6. Fill it in, bind the device, test it from the wizard, install.
    page.get_by_label("Site name").fill("Plant 1")
    page.get_by_label("Copies").fill("2")
    page.get_by_label("Print both sides").check()
    page.get_by_label("Tags").fill("fragile\nexpress")
    page.get_by_label("Tray number").fill("3")
    picker = page.get_by_label("Device for “printer” (HTTP)")
    picker.select_option(label=picker.locator("option", has_text="Front printer").inner_text())
    page.get_by_role("button", name="Test connection of the device for “printer”").click()
    expect(page.get_by_test_id("test-result")).to_contain_text("Front printer: connection works")
    expect(page.get_by_label("Site name")).to_have_value("Plant 1")
    screenshot("06-wizard-test-connection")
    page.get_by_label("API key").fill("key-typed-once")
    page.get_by_role("button", name="Install").click()
    page.wait_for_url(re.compile(r"/instances/\d+/$"))
    instance = Instance.objects.get()
    assert page.url.endswith(f"/instances/{instance.pk}/")
    assert instance.config == {"site": "Plant 1", "copies": 2, "duplex": True, "paper": "A4",
                               "tags": ["fragile", "express"], "tray": {"number": 3}}
    assert instance.secret_config == {"apiKey": "key-typed-once"}
    assert instance.bindings.get().device.name == "Front printer"
    screenshot("07-landed-on-instance")

    # 7. The device is now bound: deleting it is refused, naming the instance.
    page.goto("/devices/")
    expect(page.locator('tr[data-device="Front printer"]')).to_contain_text("Label printer (printer)")
    page.get_by_role("link", name="Delete Front printer").click()
    page.get_by_role("button", name="Delete device").click()
    expect(page.get_by_role("status")).to_contain_text("bound to 1 instance (Label printer)")


def test_the_wizard_and_devices_fit_a_phone(browser, live_server, integration, screenshot, assert_accessible):
    user = factories.make_user("phone")
    factories.add_member(user, factories.make_org("Phone Co"))
    context = browser.new_context(base_url=live_server.url, viewport={"width": 360, "height": 800})
    try:
        page = context.new_page()
        page.goto("/accounts/login/")
        page.get_by_label("Username or e-mail").fill("phone")
        page.get_by_label("Password").fill("pw-123456")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(lambda url: "/accounts/login/" not in url)
        for path in ("/integrations/label-printer/install/", "/devices/", "/devices/add/",
                     "/devices/add/?kind=http", "/devices/add/?kind=sql"):
            page.goto(path)
            assert no_sideways_scroll(page), path
            assert_accessible(page)
        screenshot("phone-wizard", on=page)
    finally:
        context.close()
