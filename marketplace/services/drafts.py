"""The draft: the one editable version of an integration."""
from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction

from .. import access, jsonvalues
from ..exceptions import Conflict, ImmutableVersion, InvalidInput
from ..models import Integration, IntegrationVersion

if TYPE_CHECKING:
    from ..querysets import AnyUser


def starter_manifest(integration: Integration) -> dict:
    return {
        "name": integration.slug,
        "title": integration.name,
        "description": integration.summary,
        "configSchema": {"type": "object", "properties": {}},
        "resources": {},
        "permissions": ["log"],
        "dataContainerSchemas": {},
        "handlers": {},
    }


def check_bundle(files: object) -> dict[str, str]:
    """Bundle shape: a mapping of relative POSIX paths to Lua source text, within caps."""
    if not isinstance(files, dict):
        raise InvalidInput("files must be an object mapping paths to Lua source", field="files")
    if len(files) > settings.JUNCTION_BUNDLE_MAX_FILES:
        raise InvalidInput(f"a bundle holds at most {settings.JUNCTION_BUNDLE_MAX_FILES} files", field="files")
    for path, source in files.items():
        pure = PurePosixPath(path)
        if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or "\x00" in path or path != str(pure):
            raise InvalidInput(f"{path!r} is not a plain relative path", field=f"files.{path}")
        if not isinstance(source, str):
            raise InvalidInput("file content must be text", field=f"files.{path}")
        if "\x00" in source:
            raise InvalidInput("file content must be text: it contains a NUL character", field=f"files.{path}")
        if len(source.encode()) > settings.JUNCTION_BUNDLE_MAX_FILE_BYTES:
            raise InvalidInput(
                f"file is larger than {settings.JUNCTION_BUNDLE_MAX_FILE_BYTES:,} bytes", field=f"files.{path}"
            )
    return files


@transaction.atomic
def create_draft(*, integration: Integration, user: AnyUser = None, from_latest: bool = True) -> IntegrationVersion:
    """Open the draft of ``integration``: a copy of the latest published version (or a
    starter manifest when there is none, or when ``from_latest`` is False)."""
    access.require_can_publish(user, integration)
    Integration.objects.select_for_update().get(pk=integration.pk)
    if integration.versions.drafts().exists():
        raise Conflict(f"{integration} already has a draft", field="integration")
    latest = integration.latest_published() if from_latest else None
    draft = IntegrationVersion(
        integration=integration,
        manifest=latest.manifest if latest else starter_manifest(integration),
        files=dict(latest.files) if latest else {},
    )
    try:
        with transaction.atomic():
            draft.save()
    except IntegrityError:
        raise Conflict(f"{integration} already has a draft", field="integration") from None
    return draft


def get_or_create_draft(*, integration: Integration, user: AnyUser = None) -> IntegrationVersion:
    return integration.versions.drafts().first() or create_draft(integration=integration, user=user)


@transaction.atomic
def save_draft(
    *, integration: Integration, manifest: dict | None = None, files: dict | None = None, user: AnyUser = None
) -> tuple[IntegrationVersion, bool]:
    """Write the draft of ``integration``, opening it first when there is none (a copy of the
    latest published version, then overwritten by what is given). Returns the draft and
    whether it was created; a refused write leaves no new draft behind."""
    access.require_can_publish(user, integration)
    draft = integration.versions.drafts().first()
    created = draft is None
    if draft is None:
        draft = create_draft(integration=integration, user=user)
    return update_draft(draft=draft, manifest=manifest, files=files, user=user), created


@transaction.atomic
def update_draft(
    *, draft: IntegrationVersion, manifest: dict | None = None, files: dict | None = None, user: AnyUser = None
) -> IntegrationVersion:
    """Replace the draft's manifest and/or bundle. Published versions are refused."""
    access.require_can_publish(user, draft.integration)
    draft = IntegrationVersion.objects.select_for_update().get(pk=draft.pk)
    if not draft.is_draft:
        raise ImmutableVersion(f"{draft} is published; edit a new draft instead")
    if manifest is not None:
        if not isinstance(manifest, dict):
            raise InvalidInput("manifest must be a JSON object", field="manifest")
        try:  # iterative: a manifest built in code may be nested past any recursion limit
            jsonvalues.check_value(manifest)
        except jsonvalues.JSONRefused as exc:
            raise InvalidInput(f"manifest is not plain JSON: {exc.message}", field="manifest") from None
        draft.manifest = manifest
    if files is not None:
        draft.files = check_bundle(files)
    draft.save()
    return draft


@transaction.atomic
def discard_draft(*, draft: IntegrationVersion, user: AnyUser = None) -> None:
    access.require_can_publish(user, draft.integration)
    # Read the row under the same lock publish_version takes: the caller's object may be
    # a draft that was published since.
    Integration.objects.select_for_update().get(pk=draft.integration_id)
    try:
        draft = IntegrationVersion.objects.select_for_update().get(pk=draft.pk)
    except IntegrationVersion.DoesNotExist:
        return
    if not draft.is_draft:
        raise ImmutableVersion("published versions cannot be discarded; mark them unavailable instead")
    draft.delete()
