"""The named queries pages, API and admin start from: visible_to, editable_by, installable,
search, for_listing."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from marketplace.choices import Role, Visibility
from marketplace.models import Integration

from . import factories


@pytest.fixture
def catalog(acme, globex):
    """Acme: a public and a private integration, both installable. Globex: a public one with
    only a draft and a private one whose only version is unavailable. Initech: public, with
    an available v1 and an unavailable v2."""
    acme_public = factories.make_integration(acme, name="Acme public", summary="Label printers")
    factories.make_published(acme_public)
    acme_private = factories.make_integration(acme, name="Acme private", visibility=Visibility.PRIVATE)
    factories.make_published(acme_private)
    globex_public = factories.make_integration(globex, name="Globex public", description="Talks to the ERP")
    factories.make_draft(globex_public)
    globex_private = factories.make_integration(globex, name="Globex private", visibility=Visibility.PRIVATE)
    factories.make_published(globex_private, available=False)
    initech = factories.make_integration(factories.make_org("Initech"), name="Initech public")
    factories.make_published(initech)
    factories.make_published(initech, available=False)
    return SimpleNamespace(
        acme_public=acme_public, acme_private=acme_private, globex_public=globex_public,
        globex_private=globex_private, initech=initech,
    )


def names(queryset) -> list[str]:
    return sorted(queryset.values_list("name", flat=True))


PUBLIC = ["Acme public", "Globex public", "Initech public"]


@pytest.mark.parametrize(
    "persona, extra",
    [
        (None, []),
        ("member", ["Acme private"]),
        ("publisher", ["Acme private"]),
        ("outsider", ["Globex private"]),
        ("admin_user", ["Acme private", "Globex private"]),
    ],
)
def test_visible_to(request, catalog, persona, extra):
    user = request.getfixturevalue(persona) if persona else AnonymousUser()
    assert names(Integration.objects.visible_to(user)) == sorted(PUBLIC + extra)


def test_visible_to_lists_each_integration_once(catalog, acme, member):
    for _ in range(3):
        factories.add_member(factories.make_user(), acme, Role.MEMBER)
    visible = list(Integration.objects.visible_to(member).values_list("pk", flat=True))
    assert len(visible) == len(set(visible)) == 4


@pytest.mark.parametrize(
    "persona, expected",
    [
        ("member", []),
        ("publisher", ["Acme private", "Acme public"]),
        ("outsider", ["Globex private", "Globex public"]),
        ("admin_user", sorted(PUBLIC + ["Acme private", "Globex private"])),
    ],
)
def test_editable_by(request, catalog, persona, expected):
    assert names(Integration.objects.editable_by(request.getfixturevalue(persona))) == expected


def test_owners_edit_too(catalog, acme):
    owner = factories.make_user()
    factories.add_member(owner, acme, Role.OWNER)
    assert names(Integration.objects.editable_by(owner)) == ["Acme private", "Acme public"]


def test_editable_by_an_anonymous_user_is_empty(catalog):
    assert names(Integration.objects.editable_by(AnonymousUser())) == []


def test_installable(catalog):
    assert names(Integration.objects.installable()) == ["Acme private", "Acme public", "Initech public"]


def test_installable_follows_availability(catalog):
    catalog.acme_public.versions.update(available=False)
    assert names(Integration.objects.installable()) == ["Acme private", "Initech public"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("acme", ["Acme private", "Acme public"]),
        ("LABEL", ["Acme public"]),  # summary, any case
        ("erp", ["Globex public"]),  # description
        ("  public ", PUBLIC),  # trimmed
        ("", sorted(PUBLIC + ["Acme private", "Globex private"])),
        (None, sorted(PUBLIC + ["Acme private", "Globex private"])),
        ("nothing like it", []),
    ],
)
def test_search(catalog, text, expected):
    assert names(Integration.objects.search(text)) == sorted(expected)


def test_for_listing_annotates_latest_number_and_instances(catalog, globex):
    factories.make_instance(catalog.initech.versions.get(number=1), globex)
    factories.make_instance(catalog.initech.versions.get(number=1), factories.make_org())
    factories.make_published(catalog.acme_public)

    rows = {i.name: i for i in Integration.objects.for_listing()}

    assert rows["Initech public"].latest_number == 2  # unavailable, but published
    assert rows["Initech public"].instance_count == 2
    assert rows["Acme public"].latest_number == 2
    assert rows["Globex public"].latest_number is None
    assert rows["Globex public"].instance_count == 0


def test_installable_listing_still_reports_the_latest_published_number(catalog):
    row = Integration.objects.installable().for_listing().get(name="Initech public")
    assert row.latest_number == 2


@pytest.mark.parametrize("persona", [None, "outsider", "admin_user"])
def test_the_listing_is_one_query(request, catalog, django_assert_max_num_queries, persona):
    user = request.getfixturevalue(persona) if persona else AnonymousUser()
    for n in range(5):
        integration = factories.make_integration(factories.make_org(), category=factories.make_category(), name=f"Extra {n}")
        factories.make_published(integration)

    # One query: integrations with category and owner joined, numbers and counts annotated.
    with django_assert_max_num_queries(1):
        rows = [
            (i.name, i.category and i.category.name, i.owner.name, i.latest_number, i.instance_count)
            for i in Integration.objects.visible_to(user).for_listing().search("e").order_by("name")
        ]

    assert len(rows) >= 8
