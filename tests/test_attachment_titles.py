"""services.media.rename_attachment: an attachment's title is changed by its integration's
publishers only; the stored file never changes. The console's attachment page and the
integration page's attachment rows rename through it."""
from __future__ import annotations

import pytest
from django.urls import reverse

from marketplace.choices import Role
from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import Attachment
from marketplace.services.media import rename_attachment

from . import factories
from .admin_forms import change_form_data


@pytest.fixture
def owner(acme):
    user = factories.make_user("olga", staff=True)
    factories.add_member(user, acme, Role.OWNER)
    return user


@pytest.fixture
def attachment(acme):
    return factories.make_attachment(factories.make_integration(acme), title="Manual")


@pytest.mark.parametrize("persona", ["owner", "publisher"])
def test_publishers_rename_attachments(request, attachment, persona):
    renamed = rename_attachment(attachment=attachment, title="  Installation guide ",
                                user=request.getfixturevalue(persona))

    stored = Attachment.objects.get(pk=attachment.pk)
    assert renamed.title == stored.title == "Installation guide"
    assert stored.file.name == attachment.file.name


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_members_and_outsiders_rename_nothing(request, attachment, persona):
    with pytest.raises(PermissionDenied):
        rename_attachment(attachment=attachment, title="Mine now", user=request.getfixturevalue(persona))
    assert Attachment.objects.get(pk=attachment.pk).title == "Manual"


def test_an_empty_title_becomes_the_files_name(attachment, publisher):
    rename_attachment(attachment=attachment, title=" ", user=publisher)
    assert Attachment.objects.get(pk=attachment.pk).title == attachment.filename


def test_a_title_too_long_is_refused_on_its_field(attachment, publisher):
    with pytest.raises(InvalidInput) as caught:
        rename_attachment(attachment=attachment, title="x" * 201, user=publisher)
    assert list(caught.value.errors) == ["title"]
    assert Attachment.objects.get(pk=attachment.pk).title == "Manual"


# --- the console ------------------------------------------------------------------------------


@pytest.fixture
def console(client, publisher):
    client.force_login(publisher)
    return client


def test_the_attachment_page_renames_through_the_service(console, attachment):
    change = reverse("admin:marketplace_attachment_change", args=[attachment.pk])
    response = console.post(change, change_form_data(console.get(change), title="Guide"))
    assert response.status_code == 302
    assert Attachment.objects.get(pk=attachment.pk).title == "Guide"


def test_the_integration_page_renames_its_attachments_through_the_service(console, attachment):
    change = reverse("admin:marketplace_integration_change", args=[attachment.integration_id])
    response = console.post(change, change_form_data(console.get(change), **{"attachments-0-title": "x" * 201}))
    assert response.status_code == 200  # refused: nothing written
    assert Attachment.objects.get(pk=attachment.pk).title == "Manual"

    response = console.post(change, change_form_data(console.get(change), **{"attachments-0-title": "Guide"}))
    assert response.status_code == 302
    assert Attachment.objects.get(pk=attachment.pk).title == "Guide"
