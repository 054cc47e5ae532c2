"""A customer reconfigures and rebinds an instance in a real browser: the form comes
prefilled with the secret left empty, a schema error is shown on its field with nothing
changed, then a new site and another printer are saved and the stored secret is kept.
The page passes axe-core and fits a phone's width. Screenshots go to var/screenshots/<test>/."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from marketplace.choices import ResourceKind, Role
from marketplace.models import Instance

from .. import factories
from .test_my_instances import fits_a_phone, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECRET = "s3cret-kept-4412"


def test_a_customer_reconfigures_and_rebinds_an_instance(page, acme, screenshot, assert_accessible):
    customer = factories.make_user("gina")
    factories.add_member(customer, acme, Role.MEMBER)
    front = factories.make_device(acme, ResourceKind.HTTP, name="Front printer")
    back = factories.make_device(acme, ResourceKind.HTTP, name="Back printer")
    erp = factories.make_device(acme, ResourceKind.SQL, name="ERP")
    version = factories.make_published(factories.make_integration(acme, name="Printer sync"))
    instance = factories.make_instance(version, acme, name="Plant 1", config={"site": "Plant 1", "apiKey": SECRET},
                                       bindings={"my-printer": front, "erp": erp})
    log_in(page, customer)

    # 1. From the instance page, the prefilled form.
    page.goto(f"/instances/{instance.pk}/")
    page.get_by_role("link", name="Reconfigure or rebind").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Configure Plant 1")
    expect(page.get_by_label("Site name")).to_have_value("Plant 1")
    expect(page.get_by_label("Interval")).to_have_value("5")
    expect(page.get_by_label("ApiKey (required)")).to_have_value("")
    expect(page.get_by_label("Device for “my-printer”")).to_have_value(str(front.pk))
    assert SECRET not in page.content()
    assert_accessible(page)
    screenshot("01-prefilled")

    # 2. A schema error lands on its field; nothing is changed.
    page.get_by_label("Interval").fill("0")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("Nothing was changed")
    expect(page.locator("#id_config\\.interval_error")).to_contain_text("less than the minimum")
    assert Instance.objects.get(pk=instance.pk).config == {"site": "Plant 1", "interval": 5}
    assert_accessible(page)
    screenshot("02-refused")

    # 3. A new site and the back printer; the secret is left empty, so it is kept.
    page.get_by_label("Interval").fill("10")
    page.get_by_label("Site name").fill("Plant 2")
    page.get_by_label("Device for “my-printer”").select_option(str(back.pk))
    page.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text("Plant 1 is saved.")
    expect(page.get_by_test_id("config")).to_contain_text("Plant 2")
    expect(page.get_by_role("definition").filter(has_text="Back printer")).to_have_count(1)
    saved = Instance.objects.get(pk=instance.pk)
    assert saved.config == {"site": "Plant 2", "interval": 10} and saved.secret_config == {"apiKey": SECRET}

    # 4. A phone's width.
    page.get_by_role("link", name="Reconfigure or rebind").click()
    assert fits_a_phone(page)
    assert_accessible(page)
    screenshot("03-phone-width")
