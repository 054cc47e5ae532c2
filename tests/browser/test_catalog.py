"""A visitor uses the catalog in a real browser: searches by publisher, filters by a
category whose choice shows its count, sorts by installs, pages on with the filters kept;
the page passes axe-core and fits a phone's width. Screenshots go to var/screenshots/<test>/."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from .. import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FITS = "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1"


def card_names(page) -> list[str]:
    return page.locator(".cards .card strong").all_inner_texts()


def test_search_filter_sort_and_pages(page, screenshot, assert_accessible):
    acme, globex = factories.make_org("Acme Printing Company"), factories.make_org("Globex")
    printing, erp = factories.make_category("Printing"), factories.make_category("ERP")
    for n in range(26):
        factories.make_published(factories.make_integration(acme, name=f"Label printer {n:02}", category=printing))
    popular = factories.make_integration(acme, name="Label printer zz", category=printing)
    factories.make_instance(factories.make_published(popular))
    factories.make_published(factories.make_integration(globex, name="Order sync", category=erp))
    withdrawn = factories.make_integration(globex, name="Withdrawn sync", category=erp)
    factories.make_published(withdrawn, available=False)

    page.goto("/")
    assert_accessible(page)
    expect(page.get_by_label("Category")).to_contain_text("Printing (27)")
    expect(page.get_by_label("Category")).to_contain_text("ERP (1)")

    page.get_by_label("Search").fill("globex")
    page.get_by_role("button", name="Search").click()
    assert card_names(page) == ["Order sync"]

    page.get_by_label("Search").fill("acme printing")
    expect(page.get_by_label("Category")).to_contain_text("Printing (0)")  # counts follow the search
    page.get_by_label("Category").select_option(value=printing.slug)
    page.get_by_label("Sort by").select_option(label="Most installed")
    page.get_by_role("button", name="Search").click()
    assert card_names(page)[0] == "Label printer zz"
    assert len(card_names(page)) == 24
    screenshot("01-filtered")

    page.get_by_role("link", name="Next").click()
    expect(page.get_by_label("Sort by")).to_have_value("installed")
    expect(page.get_by_label("Search")).to_have_value("acme printing")
    assert card_names(page) == ["Label printer 23", "Label printer 24", "Label printer 25"]

    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate(FITS)
    assert_accessible(page)
    screenshot("02-phone")
