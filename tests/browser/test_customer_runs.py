"""A publisher looks at a customer's run of its integration in a real browser: it sees how
the run went (status, timing, error code), never what the run carried."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .. import factories
from ..test_customer_data_visibility import EVERY_SECRET, customer_instance, run_with_secrets

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_publisher_sees_a_customers_run_without_its_secrets(page, log_in, publisher, acme, globex):
    version = factories.make_published(factories.make_integration(acme, name="Acme Printer sync"))
    run = run_with_secrets(customer_instance(version, globex, "Globex plant"))
    log_in(publisher)

    page.goto("/admin/marketplace/handlerrun/")
    page.get_by_role("link", name=f"sync #{run.pk} (failed)").click()

    content = page.locator("#content-main")
    expect(content.locator(".field-status")).to_contain_text("Failed")
    expect(content.locator(".field-duration_ms")).to_contain_text("42")
    expect(content.locator(".field-error_code")).to_contain_text("device_error")
    expect(content).to_contain_text("only its members see them")
    html = page.content()
    assert not [secret for secret in EVERY_SECRET if secret in html]
