"""Attachments are served only through the download view, which checks access (issue 9,
section 4): in development ``/media/`` served a private integration's attachment to anyone
who had its path. Icons stay public under ``/media/``."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from django.urls import clear_url_caches, reverse

from marketplace.choices import Visibility
from marketplace.services.media import set_icon

from . import factories


@pytest.fixture
def development_urls(settings):
    """The URLs as ``make run`` serves them (DEBUG on adds the /media/ route). pytest-django
    turns DEBUG off before the URLconf is first read, so it is read again, both ways."""
    import marketplace.urls

    def reload(debug: bool) -> None:
        settings.DEBUG = debug
        importlib.reload(marketplace.urls)
        clear_url_caches()

    reload(True)
    yield
    reload(False)


@pytest.fixture
def private_integration(acme):
    return factories.make_integration(acme, name="Secret sync", visibility=Visibility.PRIVATE)


def fetch(client, path: str):
    response = client.get(path)
    body = b"".join(response.streaming_content) if response.status_code == 200 and response.streaming else b""
    response.close()
    return response.status_code, body


@pytest.mark.parametrize("persona", [None, "outsider", "publisher", "admin_user"])
def test_an_attachments_file_is_not_served_under_media_in_development(
    request, client, development_urls, private_integration, persona
):
    attachment = factories.make_attachment(private_integration)
    if persona:
        client.force_login(request.getfixturevalue(persona))

    assert fetch(client, f"/media/{attachment.file.name}") == (404, b"")


def test_icons_are_still_served_under_media_in_development(client, development_urls, private_integration, publisher):
    set_icon(integration=private_integration, upload=factories.png_upload(), user=publisher)
    status, body = fetch(client, f"/media/{private_integration.icon.name}")
    assert status == 200 and body.startswith(b"\x89PNG")


@pytest.mark.parametrize("persona, status", [(None, 404), ("outsider", 404), ("member", 200), ("publisher", 200)])
def test_the_download_view_serves_a_private_attachment_to_its_organization_only(
    request, client, development_urls, private_integration, persona, status
):
    attachment = factories.make_attachment(private_integration)
    if persona:
        client.force_login(request.getfixturevalue(persona))

    got, body = fetch(client, reverse("marketplace:attachment-download", args=[attachment.pk]))

    assert got == status
    assert body == (factories.pdf_bytes() if status == 200 else b"")


def test_attachments_are_stored_outside_media_root_and_have_no_url(settings, private_integration):
    attachment = factories.make_attachment(private_integration)
    path = Path(attachment.file.path)
    assert path.is_file()
    assert settings.JUNCTION_PRIVATE_MEDIA_ROOT in path.parents
    assert settings.MEDIA_ROOT not in path.parents
    with pytest.raises(ValueError):
        attachment.file.url  # noqa: B018 — no page can link around the download view


def test_the_migration_moves_attachments_stored_under_media_root(settings, private_integration):
    """Installs from before the private storage kept attachments under MEDIA_ROOT."""
    from django.apps import apps
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from marketplace.models import Attachment

    moving = importlib.import_module("marketplace.migrations.0004_attachments_private_storage")
    name = default_storage.save(f"attachments/{private_integration.pk}/old/manual.pdf", ContentFile(factories.pdf_bytes()))
    attachment = Attachment.objects.create(
        integration=private_integration, file=name, title="Manual", content_type="application/pdf", size=10
    )

    moving.to_private(apps, None)
    moving.to_private(apps, None)  # again: nothing left to move, nothing lost

    assert not (settings.MEDIA_ROOT / name).exists()
    assert Path(Attachment.objects.get(pk=attachment.pk).file.path).read_bytes() == factories.pdf_bytes()
