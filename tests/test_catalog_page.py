"""The catalog page `/`: publisher search, category counts, sorting, pagination, what is
offered to new customers, and a constant number of queries."""
import re

from django.db import connection
from django.urls import reverse

from marketplace.choices import VersionState, Visibility
from marketplace.models import Integration, IntegrationVersion

from . import factories

URL = "/"


def names(response) -> list[str]:
    return [i.name for i in response.context["integrations"]]


def offered(owner, **fields) -> Integration:
    integration = factories.make_integration(owner, **fields)
    factories.make_published(integration)
    return integration


def test_the_catalog_is_the_home_page():
    assert reverse("marketplace:integration-list") == URL


def test_search_matches_the_publishers_name(client, acme, globex):
    offered(acme, name="Order sync")
    offered(globex, name="Scanner", summary="Nothing about the other one")

    assert names(client.get(URL, {"q": "globex"})) == ["Scanner"]
    assert names(client.get(URL, {"q": "ACME"})) == ["Order sync"]
    assert names(client.get(URL, {"q": "nobody"})) == []


def test_the_api_search_still_ignores_the_publishers_name(client, acme):
    offered(acme, name="Order sync")
    response = client.get("/api/v1/integrations/", {"search": "acme"})
    assert response.status_code == 200 and response.json()["results"] == []


def test_an_integration_with_nothing_available_is_offered_only_to_its_owners(client, acme, globex, publisher, outsider):
    offered(acme, name="Available")
    factories.make_published(factories.make_integration(acme, name="Withdrawn"), available=False)
    factories.make_draft(factories.make_integration(acme, name="Draft only"))
    factories.make_integration(acme, name="Empty")
    mixed = factories.make_integration(acme, name="Mixed")
    factories.make_published(mixed, available=False)
    factories.make_published(mixed)

    assert names(client.get(URL)) == ["Available", "Mixed"]
    client.force_login(outsider)
    assert names(client.get(URL)) == ["Available", "Mixed"]
    client.force_login(publisher)
    assert names(client.get(URL)) == ["Available", "Draft only", "Empty", "Mixed", "Withdrawn"]


def test_offered_to_is_the_named_rule(acme, publisher, outsider, admin_user):
    available = offered(acme, name="Available")
    withdrawn = factories.make_integration(acme, name="Withdrawn")
    factories.make_published(withdrawn, available=False)
    hidden = factories.make_integration(acme, name="Private", visibility=Visibility.PRIVATE)
    factories.make_published(hidden)

    assert set(Integration.objects.offered_to(outsider)) == {available}
    assert set(Integration.objects.offered_to(publisher)) == {available, withdrawn, hidden}
    assert set(Integration.objects.offered_to(admin_user)) == {available, withdrawn, hidden}


def category_options(response) -> dict[str, str]:
    html = response.content.decode()
    select = html[html.index('name="category"'):]
    select = select[:select.index("</select>")]
    return dict(re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', select))


def test_category_choices_count_what_the_viewer_would_see(client, acme, globex, outsider):
    erp, printing = factories.make_category("ERP"), factories.make_category("Printing")
    offered(acme, name="Order sync", category=erp)
    offered(acme, name="Label queue", category=printing)
    offered(globex, name="Globex labels", category=printing)
    offered(globex, name="Globex secret", category=printing, visibility=Visibility.PRIVATE)
    factories.make_integration(acme, name="Unreleased", category=erp)

    everything = {"": "All categories", erp.slug: "ERP (1)", printing.slug: "Printing (2)"}
    assert category_options(client.get(URL)) == everything
    # The counts follow the search, not the chosen category: each choice tells what picking it gives.
    response = client.get(URL, {"q": "globex", "category": erp.slug})
    assert category_options(response) == {"": "All categories", erp.slug: "ERP (0)", printing.slug: "Printing (1)"}
    assert names(response) == []
    assert names(client.get(URL, {"q": "globex", "category": printing.slug})) == ["Globex labels"]


def test_sort_by_name_newest_and_most_installed(client, acme):
    first = offered(acme, name="Bravo")
    offered(acme, name="Alpha")
    third = offered(acme, name="Charlie")
    for _ in range(2):
        factories.make_instance(third.versions.get())
    factories.make_instance(first.versions.get())

    assert names(client.get(URL)) == ["Alpha", "Bravo", "Charlie"]
    assert names(client.get(URL, {"sort": "name"})) == ["Alpha", "Bravo", "Charlie"]
    assert names(client.get(URL, {"sort": "newest"})) == ["Charlie", "Alpha", "Bravo"]
    assert names(client.get(URL, {"sort": "installed"})) == ["Charlie", "Bravo", "Alpha"]
    assert names(client.get(URL, {"sort": "bogus"})) == ["Alpha", "Bravo", "Charlie"]


def test_equal_sort_keys_never_overlap_across_pages(client, db):
    for _ in range(30):
        offered(factories.make_org(), name="Same")
    seen = []
    for page in (1, 2):
        seen += [i.pk for i in client.get(URL, {"sort": "installed", "page": page}).context["integrations"]]
    assert len(seen) == len(set(seen)) == 30


def test_page_links_keep_the_query_string(client, acme):
    printing = factories.make_category("Printing")
    for n in range(30):
        offered(acme, name=f"Printer {n:02}", category=printing)

    query = {"q": "printer", "category": printing.slug, "sort": "newest"}
    response = client.get(URL, query)
    kept = f"?q=printer&amp;category={printing.slug}&amp;sort=newest"
    assert len(names(response)) == 24
    assert f'href="{kept}&amp;page=2"' in response.content.decode()

    second = client.get(URL, {**query, "page": 2})
    assert len(names(second)) == 6
    assert f'href="{kept}&amp;page=1"' in second.content.decode()


def test_every_control_has_a_label(client, acme):
    offered(acme)
    html = client.get(URL).content.decode()
    form = html[html.index("<form class=\"filters"):]
    form = form[:form.index("</form>")]
    ids = re.findall(r'<(?:input|select)[^>]* id="([^"]+)"', form)
    assert len(ids) == 3
    for control in ids:
        assert f'<label for="{control}">' in form


def bulk_offer(owner, count: int, category=None) -> None:
    integrations = Integration.objects.bulk_create(
        Integration(owner=owner, name=f"Bulk {n:05}", slug=f"bulk-{owner.pk}-{n}", category=category,
                    visibility=Visibility.PUBLIC)
        for n in range(count)
    )
    IntegrationVersion.objects.bulk_create(
        IntegrationVersion(integration=i, number=1, state=VersionState.PUBLISHED, available=True, checksum="0" * 64)
        for i in integrations
    )
    if connection.vendor == "postgresql":
        # Autovacuum would analyze after such a load; without it the planner takes the tables
        # for empty and joins versions by a nested loop (seconds instead of milliseconds).
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE marketplace_integration, marketplace_integrationversion")


def count_queries(client, django_assert_num_queries, params, expected: int) -> None:
    with django_assert_num_queries(expected):
        assert client.get(URL, params).status_code == 200


def test_queries_do_not_grow_with_the_rows(client, acme, django_assert_num_queries):
    printing = factories.make_category("Printing")
    factories.make_category("ERP")
    few = {"q": "bulk", "category": printing.slug, "sort": "installed", "page": 1}
    bulk_offer(acme, 3, printing)
    # Categories with their counts, the chosen category's lookup, the count, the page.
    count_queries(client, django_assert_num_queries, few, 4)
    count_queries(client, django_assert_num_queries, {}, 3)


def test_ten_thousand_integrations_take_the_same_queries(client, acme, publisher, django_assert_num_queries):
    printing = factories.make_category("Printing")
    bulk_offer(acme, 10_000, printing)

    count_queries(client, django_assert_num_queries, {"category": printing.slug, "sort": "installed", "page": 300}, 4)
    response = client.get(URL, {"sort": "name", "page": 417})
    assert response.context["paginator"].count == 10_000
    assert names(response) == [f"Bulk {n:05}" for n in range(9984, 10_000)]

    client.force_login(publisher)
    # A signed-in viewer adds the session, the user and the navigation's organizations, nothing per row.
    count_queries(client, django_assert_num_queries, {"q": "acme", "sort": "newest"}, 6)
