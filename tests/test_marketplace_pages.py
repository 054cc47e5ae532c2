"""The marketplace listing: visibility, search and category filter."""
from django.urls import reverse

from marketplace.choices import Visibility

from . import factories


def names(response) -> list[str]:
    return [i.name for i in response.context["integrations"]]


def test_listing_shows_public_integrations_and_own_private_ones(client, publisher, acme, globex):
    factories.make_integration(acme, name="Acme public")
    factories.make_integration(acme, name="Acme private", visibility=Visibility.PRIVATE)
    factories.make_integration(globex, name="Globex private", visibility=Visibility.PRIVATE)

    assert names(client.get(reverse("marketplace:integration-list"))) == ["Acme public"]
    client.force_login(publisher)
    assert names(client.get(reverse("marketplace:integration-list"))) == ["Acme private", "Acme public"]


def test_search_matches_name_and_description_and_category_filters(client, acme, django_assert_max_num_queries):
    erp, printing = factories.make_category("ERP"), factories.make_category("Printing")
    factories.make_integration(acme, name="Order sync", category=erp)
    factories.make_integration(acme, name="Label queue", category=printing, description="Handles order labels")
    factories.make_integration(acme, name="Heartbeat", category=printing)
    url = reverse("marketplace:integration-list")

    assert names(client.get(url, {"q": "order"})) == ["Label queue", "Order sync"]
    assert names(client.get(url, {"category": printing.slug})) == ["Heartbeat", "Label queue"]
    assert names(client.get(url, {"q": "order", "category": printing.slug})) == ["Label queue"]
    with django_assert_max_num_queries(4):  # categories for the select, count, page
        client.get(url)


def test_private_integration_page_is_hidden_from_outsiders(client, outsider, acme):
    hidden = factories.make_integration(acme, visibility=Visibility.PRIVATE)
    client.force_login(outsider)
    assert client.get(hidden.get_absolute_url()).status_code == 404
