"""The publishers' console in a real browser: a publisher signs in, sees their own
integrations only, publishes a draft with notes, meets the icon rule, and deletes an
integration after a confirmation page that lists its instances first."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from marketplace.models import Instance, Integration

from .. import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def acme_integration(acme):
    return factories.make_integration(acme, name="Acme Printer sync", description="Prints labels")


@pytest.fixture
def globex_integration(globex):
    return factories.make_integration(globex, name="Globex Ledger")


def test_a_publisher_sees_only_their_own_integrations(page, log_in, publisher, acme_integration, globex_integration):
    log_in(publisher)
    page.locator("#content-main").get_by_role("link", name="Integrations", exact=True).click()
    results = page.locator("#result_list")
    expect(results).to_contain_text("Acme Printer sync")
    expect(results).not_to_contain_text("Globex Ledger")
    page.fill("#searchbar", "labels")
    page.keyboard.press("Enter")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)


def test_publishing_a_draft_through_the_action_asks_for_notes(page, log_in, publisher, acme_integration):
    draft = factories.make_draft(acme_integration)
    log_in(publisher)
    page.goto("/admin/marketplace/integration/")
    page.check(f"input[name=_selected_action][value='{acme_integration.pk}']")
    page.select_option("select[name=action]", "publish_drafts")
    page.click("button[name=index]")

    expect(page.locator("h1")).to_contain_text("Publish drafts")
    page.click("input[value=Publish]")  # no notes yet
    expect(page.locator(".field-notes .errorlist")).to_contain_text("notes are required to publish")
    page.fill("textarea[name=notes]", "First release: prints labels")
    page.click("input[value=Publish]")

    expect(page.locator(".messagelist")).to_contain_text("Published Acme Printer sync as version 1.")
    draft.refresh_from_db()
    assert draft.is_published and draft.notes == "First release: prints labels"


def test_a_non_square_icon_is_refused_with_its_reason(page, log_in, publisher, acme_integration):
    log_in(publisher)
    page.goto(f"/admin/marketplace/integration/{acme_integration.pk}/change/")
    page.set_input_files(
        "input[name=upload_icon]",
        {"name": "wide.png", "mimeType": "image/png", "buffer": factories.png_bytes(640, 480)},
    )
    page.click("input[name=_save]")
    expect(page.locator(".field-upload_icon .errorlist")).to_have_text("icon must be square: got 640×480")
    acme_integration.refresh_from_db()
    assert not acme_integration.icon


def test_deleting_confirms_with_the_instances_first(page, log_in, publisher, acme_integration, acme, globex):
    version = factories.make_published(acme_integration)
    factories.make_instance(version, acme, name="Acme plant 1")
    factories.make_instance(version, globex, name="Globex plant 7")
    log_in(publisher)
    page.goto(f"/admin/marketplace/integration/{acme_integration.pk}/change/")
    page.click("a.deletelink")

    section = page.locator(".junction-deletion")
    expect(section.locator(".junction-deleted-instances tbody tr")).to_have_count(2)
    expect(section.locator(".junction-deleted-instances")).to_contain_text("Globex plant 7")
    headings = section.locator("h3").all_inner_texts()
    assert headings == ["Installed instances that will be removed", "Also deleted"]
    expect(section.locator(".junction-deleted-counts")).to_contain_text("1 versions")

    page.click("input.junction-danger")
    expect(page.locator(".messagelist")).to_contain_text("Deleted Acme Printer sync with 2 installed instances")
    assert not Integration.objects.filter(pk=acme_integration.pk).exists()
    assert not Instance.objects.exists()
