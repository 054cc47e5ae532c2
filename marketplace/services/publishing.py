"""Publishing a draft as numbered version N, and toggling a version's availability."""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from .. import access
from ..choices import VersionState
from ..exceptions import Conflict, InvalidInput, NotPublishable
from ..models import Integration, IntegrationVersion
from ..packaging.report import Report
from ..packaging.validation import validate_version
from .drafts import check_bundle

if TYPE_CHECKING:
    from ..querysets import AnyUser


NOTES_REQUIRED = "notes are required to publish: say what changed"


def check_publishable(draft: IntegrationVersion) -> None:
    """A version may be published only when validation finds no errors (warnings are fine).
    Raises NotPublishable (an InvalidInput) whose ``errors`` carry every error of the
    validation report, keyed by where it is: ``manifest.<path>`` for the manifest
    (``manifest.handlers.sync.schedule``), ``<file>:<line>`` for code (``main.lua:3``), and
    whose ``report`` is the report itself."""
    if not isinstance(draft.manifest, dict) or not draft.manifest:
        empty = Report()
        empty.add("manifest_required", "the draft has no manifest", file="manifest.json")
        raise NotPublishable("the draft has no manifest", field="manifest", report=empty)
    check_bundle(draft.files)
    report = validate_version(draft)
    if not report.valid:
        count = len(report.errors)
        raise NotPublishable(f"the draft has {count} validation error{'s' if count != 1 else ''}; fix them to publish",
                             errors=report.error_dict(), report=report)


@transaction.atomic
def publish_version(*, draft: IntegrationVersion, notes: str, user: AnyUser = None) -> IntegrationVersion:
    """Publish ``draft`` as the integration's next version number, available at once.

    Two publishes racing on the same draft: the integration row lock serializes them and
    the loser gets Conflict. The (integration, number) unique constraint is the backstop.
    """
    access.require_can_publish(user, draft.integration)
    notes = (notes or "").strip()
    if not notes:
        raise InvalidInput(NOTES_REQUIRED, field="notes")
    Integration.objects.select_for_update().get(pk=draft.integration_id)
    try:
        draft = IntegrationVersion.objects.select_for_update().get(pk=draft.pk)
    except IntegrationVersion.DoesNotExist:
        raise Conflict("the draft no longer exists", field="draft") from None
    if not draft.is_draft:
        raise Conflict(f"this draft was already published as version {draft.number}", field="draft")
    check_publishable(draft)
    latest = IntegrationVersion.objects.filter(integration_id=draft.integration_id).aggregate(n=Max("number"))["n"]
    draft.number = (latest or 0) + 1
    draft.state = VersionState.PUBLISHED
    draft.notes = notes
    draft.available = True
    draft.published_at = timezone.now()
    draft.published_by = user if user is not None and user.is_authenticated else None
    try:
        with transaction.atomic():
            draft.save()
    except IntegrityError:
        raise Conflict("another version was published at the same moment; try again", field="draft") from None
    return draft


@transaction.atomic
def set_availability(*, version: IntegrationVersion, available: bool, user: AnyUser = None) -> IntegrationVersion:
    """Mark a published version Available (installable) or Unavailable. Instances already
    running it keep running."""
    access.require_can_publish(user, version.integration)
    version = IntegrationVersion.objects.select_for_update().get(pk=version.pk)
    if not version.is_published:
        raise InvalidInput("only published versions can be made available", field="available")
    if version.available != available:
        version.available = available
        version.save(update_fields=["available", "updated_at"])
    return version
