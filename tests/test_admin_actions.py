"""The console's operations, each a service call: publish with notes, availability,
create a draft, fork, and delete with the confirmation page that lists instances first."""
from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from marketplace.choices import VersionState, Visibility
from marketplace.models import (
    Attachment,
    HandlerRun,
    Instance,
    Integration,
    IntegrationVersion,
    ResourceBinding,
)

from . import factories


def url(name: str, *args) -> str:
    return reverse(f"admin:marketplace_{name}", args=args)


def texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync")


@pytest.fixture
def logged_in(client, publisher):
    client.force_login(publisher)
    return client


# --- publish ---------------------------------------------------------------------------------


def test_publish_action_asks_for_notes_then_publishes(logged_in, integration):
    draft = factories.make_draft(integration)
    step1 = logged_in.post(url("integration_changelist"), {"action": "publish_drafts", "_selected_action": [integration.pk]})
    assert step1.status_code == 200
    assert "notes" in step1.context["form"].fields
    assert b'name="apply"' in step1.content

    step2 = logged_in.post(url("integration_changelist"), {
        "action": "publish_drafts", "_selected_action": [integration.pk], "apply": "1", "notes": "First release",
    })
    assert step2.status_code == 302
    draft.refresh_from_db()
    assert (draft.state, draft.number, draft.notes, draft.available) == (VersionState.PUBLISHED, 1, "First release", True)
    assert "Published Printer sync as version 1." in texts(step2)


def test_publish_without_notes_shows_the_services_message_and_publishes_nothing(logged_in, integration):
    draft = factories.make_draft(integration)
    response = logged_in.post(url("integrationversion_changelist"), {
        "action": "publish_selected", "_selected_action": [draft.pk], "apply": "1", "notes": "  ",
    })
    assert response.status_code == 200
    assert response.context["form"].errors["notes"] == ["notes are required to publish: say what changed"]
    draft.refresh_from_db()
    assert draft.is_draft


def test_a_refused_draft_shows_why_and_the_others_still_publish(logged_in, acme, integration):
    broken = factories.make_draft(integration, files={})
    other = factories.make_draft(factories.make_integration(acme, name="Label printer"))
    response = logged_in.post(url("integrationversion_changelist"), {
        "action": "publish_selected", "_selected_action": [broken.pk, other.pk], "apply": "1", "notes": "Release",
    })
    assert response.status_code == 302
    assert "Printer sync: handler 'sync' names file 'main.lua', which is not in the bundle" in texts(response)
    broken.refresh_from_db(), other.refresh_from_db()
    assert broken.is_draft and other.is_published


def test_publish_page_of_a_draft(logged_in, integration):
    draft = factories.make_draft(integration)
    assert logged_in.get(url("integrationversion_publish", draft.pk)).status_code == 200
    response = logged_in.post(url("integrationversion_publish", draft.pk), {"apply": "1", "notes": "Fixes"})
    assert response.status_code == 302 and response.url == url("integrationversion_change", draft.pk)
    draft.refresh_from_db()
    assert draft.number == 1 and draft.notes == "Fixes"


# --- availability ---------------------------------------------------------------------------


def test_availability_actions_toggle_published_versions_and_refuse_drafts(logged_in, integration):
    version = factories.make_published(integration)
    draft = factories.make_draft(integration)
    response = logged_in.post(url("integrationversion_changelist"), {
        "action": "make_unavailable", "_selected_action": [version.pk, draft.pk],
    })
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.available is False
    assert "Printer sync draft: only published versions can be made available" in texts(response)

    logged_in.post(url("integrationversion_changelist"), {"action": "make_available", "_selected_action": [version.pk]})
    version.refresh_from_db()
    assert version.available is True


def test_availability_button_on_the_version_page(logged_in, integration):
    version = factories.make_published(integration)
    page = logged_in.get(url("integrationversion_change", version.pk))
    assert b"Mark unavailable" in page.content
    logged_in.post(url("integrationversion_availability", version.pk) + "?available=0")
    version.refresh_from_db()
    assert version.available is False


# --- drafts -----------------------------------------------------------------------------------


def test_create_draft_button_copies_the_latest_version(logged_in, integration):
    version = factories.make_published(integration)
    page = logged_in.get(url("integration_change", integration.pk))
    assert b"Create draft" in page.content
    response = logged_in.post(url("integration_create_draft", integration.pk))
    draft = integration.versions.drafts().get()
    assert response.status_code == 302 and response.url == url("integrationversion_change", draft.pk)
    assert draft.manifest == version.manifest and draft.files == version.files
    again = logged_in.post(url("integration_create_draft", integration.pk))
    assert "Printer sync: Printer sync already has a draft" in texts(again)
    assert integration.versions.drafts().count() == 1


def test_create_draft_action(logged_in, integration):
    logged_in.post(url("integration_changelist"), {"action": "create_drafts", "_selected_action": [integration.pk]})
    assert integration.versions.drafts().count() == 1


# --- fork ---------------------------------------------------------------------------------------


def test_fork_page_asks_name_description_and_one_of_the_users_publishing_orgs(logged_in, publisher, integration, acme):
    factories.make_published(integration)
    other = factories.make_org("Acme Labs")
    factories.add_member(publisher, other)
    response = logged_in.post(url("integration_changelist"), {"action": "fork", "_selected_action": [integration.pk]})
    assert response.status_code == 302 and response.url == url("integration_fork", integration.pk)

    page = logged_in.get(response.url)
    assert set(page.context["form"].fields["organization"].queryset) == {acme, other}
    done = logged_in.post(response.url, {"name": "Printer sync EU", "description": "For EU plants", "organization": other.pk})
    fork = Integration.objects.get(name="Printer sync EU")
    assert done.status_code == 302 and done.url == url("integration_change", fork.pk)
    assert (fork.owner, fork.description, fork.forked_from, fork.visibility) == (other, "For EU plants", integration, Visibility.PRIVATE)
    assert fork.versions.drafts().count() == 1


def test_fork_under_a_taken_name_shows_the_services_message(logged_in, integration, acme):
    response = logged_in.post(url("integration_fork", integration.pk), {"name": "Printer sync", "organization": acme.pk})
    assert response.status_code == 200
    assert response.context["form"].errors["name"] == ["Acme already has an integration named 'Printer sync'"]


def test_fork_into_an_organization_where_the_user_does_not_publish_is_refused(logged_in, integration, globex):
    response = logged_in.post(url("integration_fork", integration.pk), {"name": "Stolen", "organization": globex.pk})
    assert response.status_code == 200 and "organization" in response.context["form"].errors
    assert not Integration.objects.filter(name="Stolen").exists()


# --- delete -------------------------------------------------------------------------------------


@pytest.fixture
def installed(integration, acme, globex):
    version = factories.make_published(integration)
    ours = factories.make_instance(version, acme, name="Acme plant 1")
    theirs = factories.make_instance(version, globex, name="Globex plant 7")
    factories.make_run(theirs)
    factories.make_attachment(integration)
    return ours, theirs


def test_delete_page_lists_the_instances_first_then_everything_else(logged_in, integration, installed):
    page = logged_in.get(url("integration_delete", integration.pk))
    assert page.status_code == 200
    html = page.content.decode()
    positions = [html.index(text) for text in ("Acme plant 1", "Globex plant 7", "1 versions", "1 attachments", "1 handler runs")]
    assert positions == sorted(positions)
    assert Integration.objects.filter(pk=integration.pk).exists()


def test_confirming_deletes_the_integration_and_everything_it_owns(logged_in, integration, installed):
    response = logged_in.post(url("integration_delete", integration.pk), {"post": "yes"})
    assert response.status_code == 302 and response.url == url("integration_changelist")
    assert not Integration.objects.filter(pk=integration.pk).exists()
    for model in (IntegrationVersion, Instance, ResourceBinding, HandlerRun, Attachment):
        assert not model.objects.exists(), model
    assert any(text.startswith("Deleted Printer sync with 2 installed instances") for text in texts(response))


def test_delete_action_confirms_then_deletes(logged_in, integration, installed):
    data = {"action": "delete_integrations", "_selected_action": [integration.pk]}
    page = logged_in.post(url("integration_changelist"), data)
    assert page.status_code == 200 and b"Globex plant 7" in page.content
    assert Integration.objects.filter(pk=integration.pk).exists()
    logged_in.post(url("integration_changelist"), {**data, "post": "yes"})
    assert not Integration.objects.filter(pk=integration.pk).exists()
    assert not Instance.objects.exists()


def test_djangos_own_bulk_delete_is_not_offered(logged_in, integration):
    page = logged_in.get(url("integration_changelist"))
    choices = dict(page.context["action_form"].fields["action"].choices)
    assert "delete_selected" not in choices and "delete_integrations" in choices
