"""Icons and attachments: validation, thumbnails, and files that never outlive their rows."""
from __future__ import annotations

import io
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.db import transaction
from django.utils import timezone
from PIL import Image

from .. import access
from ..exceptions import InvalidInput
from ..models import Attachment, Integration
from ..signals import delete_file_on_commit
from ..validators import attachment_content_type, validate_attachment, validate_icon
from .common import full_clean

if TYPE_CHECKING:
    from django.core.files import File
    from django.core.files.storage import Storage
    from django.db.models.fields.files import FieldFile

    from ..querysets import AnyUser

log = logging.getLogger(__name__)


def make_thumbnail(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    image.thumbnail((settings.JUNCTION_ICON_THUMBNAIL_PX,) * 2)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


@transaction.atomic
def set_icon(*, integration: Integration, upload: File, user: AnyUser = None) -> Integration:
    """Replace the icon (square PNG, 400 px or more) and its listing thumbnail."""
    access.require_can_publish(user, integration)
    try:
        validate_icon(upload)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="icon") from None
    upload.seek(0)
    data = upload.read()
    old_icon, old_thumb = integration.icon, integration.icon_thumbnail
    delete_file_on_commit(old_icon)
    delete_file_on_commit(old_thumb)
    integration.icon.save("icon.png", ContentFile(data), save=False)
    integration.icon_thumbnail.save("thumb.png", ContentFile(make_thumbnail(data)), save=False)
    with removed_on_error([integration.icon, integration.icon_thumbnail]):
        integration.save(update_fields=["icon", "icon_thumbnail", "updated_at"])
    return integration


@transaction.atomic
def clear_icon(*, integration: Integration, user: AnyUser = None) -> Integration:
    access.require_can_publish(user, integration)
    delete_file_on_commit(integration.icon)
    delete_file_on_commit(integration.icon_thumbnail)
    integration.icon = integration.icon_thumbnail = ""
    integration.save(update_fields=["icon", "icon_thumbnail", "updated_at"])
    return integration


@transaction.atomic
def add_attachment(*, integration: Integration, upload: File, title: str = "", user: AnyUser = None) -> Attachment:
    """Store a document with the integration. Executable and HTML types are refused."""
    access.require_can_publish(user, integration)
    try:
        validate_attachment(upload)
    except ValidationError as exc:
        raise InvalidInput(exc.messages[0], field="file") from None
    title_length = Attachment._meta.get_field("title").max_length
    attachment = Attachment(
        integration=integration,
        # A title taken from a long file name is shortened; a long title given is refused below.
        title=(title or "").strip() or upload.name[:title_length],
        content_type=attachment_content_type(upload.name),
        size=upload.size,
        uploaded_by=user if user is not None and user.is_authenticated else None,
    )
    full_clean(attachment, exclude=["file"])
    attachment.file.save(upload.name, upload, save=False)
    with removed_on_error([attachment.file]):
        attachment.save()
    return attachment


@transaction.atomic
def rename_attachment(*, attachment: Attachment, title: str, user: AnyUser) -> Attachment:
    """Give ``attachment`` a new title; the stored file never changes (remove the
    attachment and add another). An empty title becomes the file's name, as when adding."""
    access.require_can_publish(user, attachment.integration)
    attachment = Attachment.objects.select_for_update().get(pk=attachment.pk)
    title_length = Attachment._meta.get_field("title").max_length
    attachment.title = (title or "").strip() or attachment.filename[:title_length]
    full_clean(attachment, exclude=["file"])
    attachment.save(update_fields=["title"])
    return attachment


@transaction.atomic
def remove_attachment(*, attachment: Attachment, user: AnyUser = None) -> None:
    access.require_can_publish(user, attachment.integration)
    attachment.delete()


def copy_file(field_file: FieldFile, name: str) -> ContentFile:
    with field_file.open("rb") as handle:
        return ContentFile(handle.read(), name=name)


@contextmanager
def removed_on_error(field_files: list[FieldFile]) -> Iterator[None]:
    """Files are written before their row; if saving the row fails, remove them again.
    ``field_files`` is read when the error happens, so callers may append as they write."""
    try:
        yield
    except BaseException:
        for field_file in field_files:
            if field_file:
                field_file.storage.delete(field_file.name)
        raise


# Folders whose files belong to rows: icon_path and thumbnail_path in the default storage,
# attachment_path in the private one; nothing else in either is touched.
MANAGED_FOLDERS = {"default": ("icons",), "private": ("attachments",)}


def sweep_orphan_files(*, older_than: timedelta | None = None, now: datetime | None = None) -> list[str]:
    """Delete stored files no row refers to, last written more than ``older_than`` ago
    (JUNCTION_ORPHAN_FILE_HOURS), and return their names.

    Files are written before their rows commit; when an enclosing transaction rolls back
    afterwards (a fork or icon change inside a larger one), nothing deletes them at once.
    The age keeps this away from files whose transaction is still open."""
    now = now or timezone.now()
    cutoff = now - (older_than or timedelta(hours=settings.JUNCTION_ORPHAN_FILE_HOURS))
    referenced = {
        *Integration.objects.exclude(icon="").values_list("icon", flat=True),
        *Integration.objects.exclude(icon_thumbnail="").values_list("icon_thumbnail", flat=True),
        *Attachment.objects.values_list("file", flat=True),
    }
    removed: list[str] = []
    for alias, folders in MANAGED_FOLDERS.items():
        storage = storages[alias]
        for name in _stored_files(storage, folders):
            if name in referenced:
                continue
            try:
                if storage.get_modified_time(name) >= cutoff:
                    continue
                storage.delete(name)
            except FileNotFoundError:  # removed by someone else meanwhile
                continue
            removed.append(name)
    if removed:
        log.warning("removed %d stored files no row refers to: %s", len(removed), ", ".join(removed[:20]))
    return removed


def _stored_files(storage: Storage, folders: Iterable[str]) -> list[str]:
    names: list[str] = []
    pending = list(folders)
    while pending:
        folder = pending.pop()
        try:
            subfolders, files = storage.listdir(folder)
        except FileNotFoundError:
            continue
        names.extend(f"{folder}/{name}" for name in files)
        pending.extend(f"{folder}/{name}" for name in subfolders)
    return names
