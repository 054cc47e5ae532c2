"""The marketplace listing: visibility, search and category filter."""
from django.urls import reverse

from marketplace.choices import Visibility

from . import factories


def names(response) -> list[str]:
    return [i.name for i in response.context["integrations"]]


def test_listing_shows_public_integrations_and_own_private_ones(client, publisher, acme, globex):
    factories.make_published(factories.make_integration(acme, name="Acme public"))
    factories.make_published(factories.make_integration(acme, name="Acme private", visibility=Visibility.PRIVATE))
    factories.make_published(factories.make_integration(globex, name="Globex private", visibility=Visibility.PRIVATE))

    assert names(client.get(reverse("marketplace:integration-list"))) == ["Acme public"]
    client.force_login(publisher)
    assert names(client.get(reverse("marketplace:integration-list"))) == ["Acme private", "Acme public"]


def test_search_matches_name_and_description_and_category_filters(client, acme, django_assert_max_num_queries):
    erp, printing = factories.make_category("ERP"), factories.make_category("Printing")
    for integration in (
        factories.make_integration(acme, name="Order sync", category=erp),
        factories.make_integration(acme, name="Label queue", category=printing, description="Handles order labels"),
        factories.make_integration(acme, name="Heartbeat", category=printing),
    ):
        factories.make_published(integration)
    url = reverse("marketplace:integration-list")

    assert names(client.get(url, {"q": "order"})) == ["Label queue", "Order sync"]
    assert names(client.get(url, {"category": printing.slug})) == ["Heartbeat", "Label queue"]
    assert names(client.get(url, {"q": "order", "category": printing.slug})) == ["Label queue"]
    with django_assert_max_num_queries(3):  # categories with their counts, count, page
        client.get(url)


def test_private_integration_page_is_hidden_from_outsiders(client, outsider, acme):
    hidden = factories.make_integration(acme, visibility=Visibility.PRIVATE)
    client.force_login(outsider)
    assert client.get(hidden.get_absolute_url()).status_code == 404


def test_the_description_is_markdown_shown_safely(client, acme):
    description = (
        "# Setup\n\nBind the **printer** and see [the guide](https://example.com/guide).\n\n"
        "- one\n- two\n\n"
        "<script>alert('x')</script><img src=x onerror=alert(1)>"
        "[click](javascript:alert(1)) <a href=\"https://example.com\" onclick=\"steal()\">site</a>"
    )
    integration = factories.make_integration(acme, description=description)

    html = client.get(integration.get_absolute_url()).content.decode()
    body = html[html.index('<div class="description">'):]
    body = body[:body.index("</div>")]

    assert "<h2>Setup</h2>" in body  # the page's own h1 is the integration's name
    assert "<strong>printer</strong>" in body and "<li>one</li>" in body
    assert 'href="https://example.com/guide" rel="nofollow noopener noreferrer"' in body
    for dangerous in ("<script", "onerror", "onclick", "javascript:", "<img"):
        assert dangerous not in body
