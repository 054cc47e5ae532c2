"""Forking: a copy of an integration under a new name, owned by the forking organization."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import transaction

from .. import access
from ..choices import Visibility
from ..models import Attachment, Integration, IntegrationVersion, Organization
from .catalog import create_integration
from .media import copy_file, removed_on_error

if TYPE_CHECKING:
    from django.db.models.fields.files import FieldFile

    from ..querysets import AnyUser


@transaction.atomic
def fork_integration(
    *,
    source: Integration,
    organization: Organization,
    name: str,
    description: str | None = None,
    user: AnyUser = None,
) -> Integration:
    """Create a new integration owned by ``organization`` with a new name, slug and
    description, holding a draft copy of the source's latest content (the latest published
    version; the draft only when nothing is published and the user may edit the source, so
    unpublished work never leaks to another organization), its category, icon and
    attachments, and ``forked_from`` set.

    The fork starts private and unpublished: its owner decides when it reaches the
    marketplace.
    """
    access.require_visible(user, source)
    fork = create_integration(
        organization=organization,
        name=name,
        summary=source.summary,
        description=source.description if description is None else description,
        category=source.category,
        visibility=Visibility.PRIVATE,
        user=user,
    )
    fork.forked_from = source
    origin = source.latest_published()
    if origin is None and (user is None or access.has_role(user, source.owner, access.PUBLISHING_ROLES)):
        origin = source.versions.drafts().first()
    if origin is not None:
        IntegrationVersion.objects.create(integration=fork, manifest=origin.manifest, files=dict(origin.files))
    written: list[FieldFile] = []
    with removed_on_error(written):
        if source.icon:
            fork.icon.save("icon.png", copy_file(source.icon, "icon.png"), save=False)
            written.append(fork.icon)
            if source.icon_thumbnail:
                fork.icon_thumbnail.save("thumb.png", copy_file(source.icon_thumbnail, "thumb.png"), save=False)
                written.append(fork.icon_thumbnail)
        fork.save()
        for attachment in source.attachments.all():
            copy = Attachment(
                integration=fork, title=attachment.title, content_type=attachment.content_type,
                size=attachment.size, uploaded_by=user if user is not None and user.is_authenticated else None,
            )
            copy.file.save(attachment.filename, copy_file(attachment.file, attachment.filename), save=False)
            written.append(copy.file)
            copy.save()
    return fork
