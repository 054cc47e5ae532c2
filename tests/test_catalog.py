"""create_integration: names unique per organization, slugs generated and unique."""
from __future__ import annotations

import threading

import pytest
from django.db import IntegrityError, transaction

from marketplace.choices import Visibility
from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import Integration
from marketplace.services.catalog import create_integration

from . import factories
from .conftest import requires_postgres


def test_publisher_creates_an_integration_without_versions(acme, publisher):
    category = factories.make_category("Printing")

    integration = create_integration(
        organization=acme, name="  Printer sync ", summary="Keeps printers in step", category=category,
        visibility=Visibility.PRIVATE, user=publisher,
    )

    integration.refresh_from_db()
    assert integration.owner == acme
    assert integration.name == "Printer sync"
    assert integration.slug == "printer-sync"
    assert integration.category == category
    assert integration.visibility == Visibility.PRIVATE
    assert integration.versions.count() == 0
    assert integration.forked_from is None


def test_name_is_required(acme, publisher):
    with pytest.raises(InvalidInput) as exc:
        create_integration(organization=acme, name="   ", user=publisher)
    assert exc.value.errors == {"name": ["a name is required"]}


def test_name_is_unique_within_an_organization(acme, publisher):
    create_integration(organization=acme, name="Printer sync", user=publisher)

    with pytest.raises(InvalidInput) as exc:
        create_integration(organization=acme, name="Printer sync", user=publisher)

    assert exc.value.errors == {"name": ["Acme already has an integration named 'Printer sync'"]}
    assert Integration.objects.filter(owner=acme).count() == 1


def test_same_name_in_another_organization_gets_its_own_slug(acme, globex, publisher, outsider):
    first = create_integration(organization=acme, name="Printer sync", user=publisher)
    second = create_integration(organization=globex, name="Printer sync", user=outsider)
    third = create_integration(organization=factories.make_org(), name="Printer  Sync!")

    assert (first.slug, second.slug, third.slug) == ("printer-sync", "printer-sync-2", "printer-sync-3")


@pytest.mark.parametrize(
    "name, slug",
    [("Über Drucker", "uber-drucker"), ("!!!", "integration"), ("x" * 120, "x" * 100)],
)
def test_slug_generation(acme, name, slug):
    assert create_integration(organization=acme, name=name).slug == slug


def test_explicit_slug_must_be_free(acme, globex):
    create_integration(organization=acme, name="One", slug="shared")

    with pytest.raises(InvalidInput) as exc:
        create_integration(organization=globex, name="Two", slug="shared")

    assert exc.value.errors == {"slug": ["the slug 'shared' is taken"]}


def test_an_explicit_slug_must_be_a_slug(acme):
    with pytest.raises(InvalidInput) as exc:
        create_integration(organization=acme, name="Odd", slug="Not a slug!")
    assert list(exc.value.errors) == ["slug"]
    assert not Integration.objects.exists()


def test_invalid_visibility_is_refused_by_full_clean(acme):
    with pytest.raises(InvalidInput) as exc:
        create_integration(organization=acme, name="Odd", visibility="secret")
    assert list(exc.value.errors) == ["visibility"]
    assert not Integration.objects.exists()


def test_the_database_backs_the_name_rule(acme):
    factories.make_integration(acme, name="Printer sync")
    with pytest.raises(IntegrityError), transaction.atomic():
        Integration.objects.create(owner=acme, name="Printer sync", slug="other-slug")


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_of_the_organization_create(request, acme, persona):
    user = request.getfixturevalue(persona)
    with pytest.raises(PermissionDenied):
        create_integration(organization=acme, name="Not mine", user=user)
    assert not Integration.objects.exists()


def test_superuser_creates_for_any_organization(acme, admin_user):
    assert create_integration(organization=acme, name="By root", user=admin_user).owner == acme


@requires_postgres
@pytest.mark.postgres
def test_racing_creates_under_one_name_give_one_integration(transactional_db):
    organization = factories.make_org()
    barrier = threading.Barrier(2)

    def create():
        barrier.wait(timeout=10)
        return create_integration(organization=organization, name="Printer sync")

    results = factories.in_threads(create, create)

    created = [r for r in results if isinstance(r, Integration)]
    refused = [r for r in results if isinstance(r, InvalidInput)]
    assert len(created) == 1 and len(refused) == 1, results
    assert list(refused[0].errors) == ["name"], refused[0].errors
    assert Integration.objects.filter(owner=organization).count() == 1
