"""services.catalog.update_integration: what the catalog shows of an integration (name,
summary, description, category, visibility) is changed by its organization's owners and
publishers only, with the same checks as creating it; the console edits through it."""
from __future__ import annotations

import pytest
from django.urls import reverse

from marketplace.choices import Role, Visibility
from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import Integration
from marketplace.services.catalog import update_integration

from . import factories
from .admin_forms import change_form_data


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga", staff=True)
    factories.add_member(user, acme, Role.OWNER)
    return user


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync", summary="Syncs printers", description="Long text")


@pytest.mark.parametrize("persona", ["owner", "publisher"])
def test_owners_and_publishers_edit_the_catalog_entry(request, integration, persona):
    category = factories.make_category("Printing")

    edited = update_integration(
        integration=integration, name="Printer sync 2", summary="Now faster", description="New text",
        category=category, visibility=Visibility.PRIVATE, user=request.getfixturevalue(persona),
    )

    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.name, stored.summary, stored.description, stored.category, stored.visibility) == (
        "Printer sync 2", "Now faster", "New text", category, Visibility.PRIVATE)
    assert edited.name == "Printer sync 2"
    assert stored.slug == integration.slug  # the URL does not move


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_members_and_outsiders_edit_nothing(request, integration, persona):
    with pytest.raises(PermissionDenied):
        update_integration(integration=integration, name="Hijacked", user=request.getfixturevalue(persona))
    assert Integration.objects.get(pk=integration.pk).name == "Printer sync"


def test_fields_not_given_stay(integration, publisher):
    category = factories.make_category()
    Integration.objects.filter(pk=integration.pk).update(category=category)

    update_integration(integration=integration, summary="Only this", user=publisher)

    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.name, stored.summary, stored.description, stored.category) == (
        "Printer sync", "Only this", "Long text", category)
    update_integration(integration=integration, category=None, user=publisher)
    assert Integration.objects.get(pk=integration.pk).category is None


def test_refusals_are_keyed_by_field(acme, integration, publisher):
    factories.make_integration(acme, name="Scanner sync")
    cases = [
        ({"name": "Scanner sync"}, {"name": [f"{acme} already has an integration named 'Scanner sync'"]}),
        ({"name": "  "}, {"name": ["a name is required"]}),
        ({"visibility": "everyone"}, "visibility"),
        ({"summary": "x" * 241}, "summary"),
    ]
    for change, expected in cases:
        with pytest.raises(InvalidInput) as caught:
            update_integration(integration=integration, user=publisher, **change)
        if isinstance(expected, dict):
            assert caught.value.errors == expected
        else:
            assert list(caught.value.errors) == [expected]
    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.name, stored.visibility, stored.summary) == ("Printer sync", Visibility.PUBLIC, "Syncs printers")


def test_another_organization_may_use_the_name(integration, globex, outsider):
    theirs = factories.make_integration(globex, name="Label sync")
    update_integration(integration=theirs, name="Printer sync", user=outsider)
    assert Integration.objects.get(pk=theirs.pk).name == "Printer sync"


# --- the console ------------------------------------------------------------------------------


def test_the_console_edits_through_the_service(client, publisher, integration):
    client.force_login(publisher)
    change = reverse("admin:marketplace_integration_change", args=[integration.pk])
    page = client.get(change)

    response = client.post(change, change_form_data(page, name="Printer sync 2", visibility=Visibility.PRIVATE))

    assert response.status_code == 302
    stored = Integration.objects.get(pk=integration.pk)
    assert (stored.name, stored.visibility) == ("Printer sync 2", Visibility.PRIVATE)
