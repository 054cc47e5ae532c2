"""Icons (set_icon, clear_icon) and attachments (add, remove, download)."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.urls import reverse
from PIL import Image

from marketplace.choices import Visibility
from marketplace.exceptions import InvalidInput, PermissionDenied
from marketplace.models import Attachment, Integration
from marketplace.services.media import add_attachment, clear_icon, remove_attachment, set_icon

from . import factories


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync", slug="printer-sync")


def files_under(root) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# --- Icons --------------------------------------------------------------------------------------

def damaged(data: bytes) -> bytes:
    """Flip bytes in the middle of the pixel data; header and chunk layout stay intact."""
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]


ICON_REFUSALS = [
    pytest.param(factories.png_bytes(400, fmt="JPEG"), "icon must be a PNG image: got JPEG", id="jpeg"),
    pytest.param(b"%PDF-1.4 not an image at all", "icon must be a PNG image: the file is not an image", id="not-image"),
    pytest.param(factories.png_bytes(640, 480), "icon must be square: got 640×480", id="not-square"),
    pytest.param(factories.png_bytes(399), "icon must be at least 400×400 px: got 399×399", id="too-small"),
    pytest.param(factories.png_claiming(4097, 4097), "icon must be at most 4096×4096 px: got 4097×4097", id="too-big"),
    pytest.param(factories.png_claiming(10_000, 10_000), "icon has too many pixels to be decoded safely", id="bomb-warning"),
    pytest.param(factories.png_claiming(40_000, 40_000), "icon has too many pixels to be decoded safely", id="bomb-error"),
    pytest.param(
        factories.noisy_png_bytes(400)[:200_000], "icon is not a valid PNG: the image data is damaged", id="truncated"
    ),
    pytest.param(
        damaged(factories.noisy_png_bytes(400)), "icon is not a valid PNG: the image data is damaged", id="corrupted"
    ),
]


@pytest.mark.parametrize("data, message", ICON_REFUSALS)
def test_each_icon_refusal_has_its_message(integration, publisher, media_root, data, message):
    with pytest.raises(InvalidInput) as exc:
        set_icon(integration=integration, upload=factories.upload("icon.png", data, "image/png"), user=publisher)

    assert exc.value.errors == {"icon": [message]}
    integration.refresh_from_db()
    assert not integration.icon and not integration.icon_thumbnail
    assert files_under(media_root) == []


def test_a_decompression_bomb_is_small_on_disk():
    # What makes it a bomb: a few dozen bytes that claim 1.6 billion pixels.
    assert len(factories.png_claiming(40_000, 40_000)) < 200


def test_too_many_bytes(integration, publisher, settings):
    settings.JUNCTION_ICON_MAX_BYTES = 1_000
    data = factories.noisy_png_bytes(400)

    with pytest.raises(InvalidInput) as exc:
        set_icon(integration=integration, upload=factories.upload("icon.png", data), user=publisher)

    assert exc.value.errors == {"icon": [f"icon is too large: {len(data):,} bytes, at most 1,000"]}


def test_too_many_bytes_when_the_upload_does_not_say_its_size(integration, publisher, settings):
    settings.JUNCTION_ICON_MAX_BYTES = 1_000
    with pytest.raises(InvalidInput) as exc:
        set_icon(integration=integration, upload=io.BytesIO(factories.noisy_png_bytes(400)), user=publisher)
    assert exc.value.errors == {"icon": ["icon is too large: more than 1,000 bytes"]}


@pytest.mark.parametrize("side", [400, 1000])
def test_a_good_icon_is_stored_with_a_thumbnail(integration, publisher, settings, side):
    data = factories.png_bytes(side)

    set_icon(integration=integration, upload=factories.upload("whatever.png", data), user=publisher)

    integration = Integration.objects.get(pk=integration.pk)
    assert Path(integration.icon.path).read_bytes() == data
    assert integration.icon.name.startswith("icons/printer-sync/")
    with Image.open(integration.icon_thumbnail.path) as thumbnail:
        assert thumbnail.format == "PNG"
        assert max(thumbnail.size) <= settings.JUNCTION_ICON_THUMBNAIL_PX
        assert thumbnail.size[0] == thumbnail.size[1]


def test_replacing_the_icon_deletes_the_old_files(integration, publisher, media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        set_icon(integration=integration, upload=factories.png_upload(400), user=publisher)
    old = [Path(integration.icon.path), Path(integration.icon_thumbnail.path)]

    with django_capture_on_commit_callbacks(execute=True):
        set_icon(integration=integration, upload=factories.png_upload(500), user=publisher)

    integration = Integration.objects.get(pk=integration.pk)
    assert not any(p.exists() for p in old)
    assert files_under(media_root) == sorted([Path(integration.icon.path), Path(integration.icon_thumbnail.path)])


def test_a_refused_replacement_keeps_the_current_icon(integration, publisher, media_root, django_capture_on_commit_callbacks):
    set_icon(integration=integration, upload=factories.png_upload(400), user=publisher)
    files = files_under(media_root)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(InvalidInput):
        set_icon(integration=integration, upload=factories.png_upload(300), user=publisher)

    assert files_under(media_root) == files
    assert Integration.objects.get(pk=integration.pk).icon.name == integration.icon.name


def test_clear_icon(integration, publisher, media_root, django_capture_on_commit_callbacks):
    set_icon(integration=integration, upload=factories.png_upload(400), user=publisher)

    with django_capture_on_commit_callbacks(execute=True):
        clear_icon(integration=integration, user=publisher)

    integration = Integration.objects.get(pk=integration.pk)
    assert not integration.icon and not integration.icon_thumbnail
    assert files_under(media_root) == []


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_change_the_icon(request, integration, persona, media_root):
    user = request.getfixturevalue(persona)
    with pytest.raises(PermissionDenied):
        set_icon(integration=integration, upload=factories.png_upload(400), user=user)
    with pytest.raises(PermissionDenied):
        clear_icon(integration=integration, user=user)
    assert files_under(media_root) == []


# --- Attachments --------------------------------------------------------------------------------

def test_a_pdf_is_stored_with_its_type_and_size(integration, publisher, media_root):
    data = factories.pdf_bytes()

    attachment = add_attachment(integration=integration, upload=factories.upload("manual.pdf", data), user=publisher)

    attachment = Attachment.objects.get(pk=attachment.pk)
    assert (attachment.title, attachment.filename) == ("manual.pdf", "manual.pdf")
    assert (attachment.content_type, attachment.size) == ("application/pdf", len(data))
    assert attachment.uploaded_by == publisher
    assert Path(attachment.file.path).read_bytes() == data
    assert attachment.file.name.startswith(f"attachments/{integration.pk}/")


def test_two_uploads_of_the_same_name_do_not_collide(integration, publisher):
    first = factories.make_attachment(integration, title="  Manual v1 ")
    second = factories.make_attachment(integration, data=factories.pdf_bytes() + b"% v2\n", title="Manual v2")

    assert first.title == "Manual v1"
    assert first.file.name != second.file.name
    assert first.filename == second.filename == "manual.pdf"


ATTACHMENT_REFUSALS = [
    pytest.param("setup.exe", b"MZ\x90\x00", "attachments of type .exe are refused: executable or HTML content", id="exe"),
    pytest.param("SETUP.EXE", b"hello", "attachments of type .exe are refused: executable or HTML content", id="exe-upper"),
    pytest.param("page.html", b"<html></html>", "attachments of type .html are refused: executable or HTML content", id="html"),
    pytest.param("logo.svg", b"<svg/>", "attachments of type .svg are refused: executable or HTML content", id="svg"),
    pytest.param("manual.pdf.exe", b"%PDF", "attachments of type .exe are refused: executable or HTML content", id="double"),
    pytest.param("manual.pdf", b"\x7fELF\x02\x01\x01", "attachment looks like an executable program and is refused", id="elf"),
    pytest.param("manual.pdf", b"MZ\x90\x00\x03", "attachment looks like an executable program and is refused", id="mz"),
    pytest.param("notes.txt", b"#!/bin/sh\nrm -rf /\n", "attachment looks like an executable program and is refused", id="script"),
    pytest.param("empty.pdf", b"", "attachment is empty", id="empty"),
]


@pytest.mark.parametrize("name, data, message", ATTACHMENT_REFUSALS)
def test_each_attachment_refusal_has_its_message(integration, publisher, media_root, name, data, message):
    with pytest.raises(InvalidInput) as exc:
        add_attachment(integration=integration, upload=factories.upload(name, data), user=publisher)

    assert exc.value.errors == {"file": [message]}
    assert not Attachment.objects.exists()
    assert files_under(media_root) == []


def test_attachment_size_cap(integration, publisher, settings, media_root):
    settings.JUNCTION_ATTACHMENT_MAX_BYTES = 100
    data = factories.pdf_bytes().ljust(101, b" ")

    with pytest.raises(InvalidInput) as exc:
        add_attachment(integration=integration, upload=factories.upload("big.pdf", data), user=publisher)

    assert exc.value.errors == {"file": ["attachment is too large: 101 bytes, at most 100"]}
    assert add_attachment(integration=integration, upload=factories.upload("ok.pdf", data[:100]), user=publisher).size == 100


def test_a_title_from_a_long_file_name_is_shortened(integration, publisher):
    name = "a" * 230 + ".pdf"  # file names may be 255 characters long, titles 200
    attachment = add_attachment(integration=integration, upload=factories.upload(name, factories.pdf_bytes()), user=publisher)
    assert Attachment.objects.get(pk=attachment.pk).title == name[:200]


def test_a_long_title_is_refused(integration, publisher, media_root):
    with pytest.raises(InvalidInput) as exc:
        add_attachment(
            integration=integration, upload=factories.upload("manual.pdf", factories.pdf_bytes()), title="t" * 201,
            user=publisher,
        )
    assert list(exc.value.errors) == ["title"]
    assert not Attachment.objects.exists() and files_under(media_root) == []


def test_remove_attachment_deletes_its_file(integration, publisher, media_root, django_capture_on_commit_callbacks):
    attachment = factories.make_attachment(integration)

    with django_capture_on_commit_callbacks(execute=True):
        remove_attachment(attachment=attachment, user=publisher)

    assert not Attachment.objects.exists()
    assert files_under(media_root) == []


@pytest.mark.parametrize("persona", ["member", "outsider"])
def test_only_publishers_add_and_remove_attachments(request, integration, persona, media_root):
    user = request.getfixturevalue(persona)
    attachment = factories.make_attachment(integration)
    with pytest.raises(PermissionDenied):
        add_attachment(integration=integration, upload=factories.upload("x.pdf", factories.pdf_bytes()), user=user)
    with pytest.raises(PermissionDenied):
        remove_attachment(attachment=attachment, user=user)
    assert list(Attachment.objects.all()) == [attachment]
    assert len(files_under(media_root)) == 1


# --- Download view ------------------------------------------------------------------------------

def download(client, attachment):
    response = client.get(reverse("marketplace:attachment-download", args=[attachment.pk]))
    body = b"".join(response.streaming_content) if response.status_code == 200 else b""
    response.close()
    return response, body


@pytest.mark.parametrize("persona", [None, "publisher", "outsider"])
def test_a_public_attachment_is_served_as_a_download(request, client, integration, persona):
    attachment = factories.make_attachment(integration)
    if persona:
        client.force_login(request.getfixturevalue(persona))

    response, body = download(client, attachment)

    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="manual.pdf"'
    assert response["Content-Type"] == "application/pdf"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert body == factories.pdf_bytes()


@pytest.mark.parametrize("persona, status", [(None, 404), ("outsider", 404), ("member", 200), ("publisher", 200), ("admin_user", 200)])
def test_a_private_attachment_is_only_served_to_its_organization(request, client, integration, persona, status):
    integration.visibility = Visibility.PRIVATE
    integration.save()
    attachment = factories.make_attachment(integration)
    if persona:
        client.force_login(request.getfixturevalue(persona))

    response, body = download(client, attachment)

    assert response.status_code == status
    assert (body == factories.pdf_bytes()) is (status == 200)


def test_an_unknown_attachment_is_404(client, db):
    response = client.get(reverse("marketplace:attachment-download", args=[987654]))
    assert response.status_code == 404


# --- Files left behind by a rolled-back transaction -----------------------------------------

def test_files_no_row_refers_to_are_swept_once_old_and_only_those(integration, acme, publisher, media_root, settings):
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from marketplace.services.media import sweep_orphan_files

    kept = factories.make_integration(acme, name="Kept")
    set_icon(integration=kept, upload=factories.png_upload(), user=publisher)
    add_attachment(integration=kept, upload=factories.upload("manual.pdf", factories.pdf_bytes(), "application/pdf"), user=publisher)
    for root in (settings.MEDIA_ROOT, settings.JUNCTION_PRIVATE_MEDIA_ROOT):
        (root / "other").mkdir(parents=True)
        (root / "other" / "notes.txt").write_text("not Junction's: never touched")
    referenced = files_under(media_root)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), transaction.atomic():  # an outer transaction that rolls back
        set_icon(integration=integration, upload=factories.png_upload(), user=publisher)
        add_attachment(integration=integration, upload=factories.upload("manual.pdf", factories.pdf_bytes(), "application/pdf"), user=publisher)
        raise Abandoned
    left_behind = sorted(set(files_under(media_root)) - set(referenced))
    assert len(left_behind) == 3  # icon, thumbnail, attachment

    assert sweep_orphan_files() == []  # younger than JUNCTION_ORPHAN_FILE_HOURS: maybe still in use
    later = timezone.now() + timedelta(hours=25)
    removed = sweep_orphan_files(now=later)

    roots = {"icons": settings.MEDIA_ROOT, "attachments": settings.JUNCTION_PRIVATE_MEDIA_ROOT}
    assert sorted(roots[name.split("/")[0]] / name for name in removed) == left_behind
    assert files_under(media_root) == referenced
    assert sweep_orphan_files(now=later) == []
