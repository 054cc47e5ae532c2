from __future__ import annotations

import hashlib
import json

from django.conf import settings
from django.db import models
from django.db.models import Q

from ..choices import VersionState
from ..exceptions import ImmutableVersion
from ..querysets import VersionQuerySet

# The fields that make up a published version; none may change once it is published.
FROZEN_FIELDS = ("manifest", "files", "notes", "number", "integration_id", "checksum")


def content_checksum(manifest: dict, files: dict) -> str:
    """sha256 over the canonical JSON of manifest and bundle: equal content, equal checksum."""
    canonical = json.dumps({"manifest": manifest, "files": files}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class IntegrationVersion(models.Model):
    """The content of an integration: a manifest and a bundle of Lua files.

    An integration has at most one draft, edited freely. Publishing turns the draft into
    version N (1, 2, 3 ... per integration) with notes; from then on its content, number and
    notes never change: only ``available`` (may it be installed?) can be toggled.
    """

    integration = models.ForeignKey("marketplace.Integration", on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(null=True, blank=True, editable=False)
    state = models.CharField(max_length=16, choices=VersionState.choices, default=VersionState.DRAFT, editable=False)
    notes = models.TextField(blank=True, help_text="What changed; required to publish.")
    manifest = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text="Bundle: path → Lua source.")
    checksum = models.CharField(max_length=64, editable=False)
    available = models.BooleanField(default=False, help_text="Only available published versions can be installed.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, editable=False, related_name="+"
    )

    objects = VersionQuerySet.as_manager()

    class Meta:
        ordering = ["integration", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["integration", "number"], name="%(app_label)s_%(class)s_unique_number"),
            models.UniqueConstraint(
                fields=["integration"], condition=Q(state=VersionState.DRAFT), name="%(app_label)s_%(class)s_one_draft"
            ),
            models.CheckConstraint(
                condition=Q(state=VersionState.DRAFT, number__isnull=True)
                | Q(state=VersionState.PUBLISHED, number__isnull=False),
                name="%(app_label)s_%(class)s_published_has_number",
            ),
            models.CheckConstraint(
                condition=Q(state=VersionState.PUBLISHED) | Q(available=False),
                name="%(app_label)s_%(class)s_draft_not_available",
            ),
        ]

    def __str__(self) -> str:
        label = f"v{self.number}" if self.is_published else "draft"
        return f"{self.integration} {label}"

    @property
    def is_published(self) -> bool:
        return self.state == VersionState.PUBLISHED

    @property
    def is_draft(self) -> bool:
        return self.state == VersionState.DRAFT

    @property
    def label(self) -> str:
        return f"v{self.number}" if self.is_published else "draft"

    def _stored(self) -> dict | None:
        """The row as the database holds it now. The guard below compares against this and
        not against what was loaded: an object loaded as a draft and published elsewhere
        since (or a JSON field changed in place) must not slip through."""
        if self._state.adding or self.pk is None:
            return None
        return type(self)._base_manager.filter(pk=self.pk).values("state", *FROZEN_FIELDS).first()

    def save(self, *args, **kwargs):
        # Migration 0003's trigger backs this up for writes that skip save() (update(), raw SQL).
        stored = self._stored()
        if stored is not None and stored["state"] == VersionState.PUBLISHED:
            self.checksum = stored["checksum"]
            changed = [f for f in FROZEN_FIELDS if getattr(self, f) != stored[f]]
            if changed or self.state != VersionState.PUBLISHED:
                raise ImmutableVersion(
                    f"version {stored['number']} is published and cannot be changed "
                    f"({', '.join(changed) or 'state'}); create a draft instead",
                    field=changed[0] if changed else "state",
                )
        else:
            self.checksum = content_checksum(self.manifest, self.files)
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        # Whole integrations are deleted through services.deletion; a lone published
        # version is history that instances may run.
        stored = self._stored()
        if self.is_published or (stored is not None and stored["state"] == VersionState.PUBLISHED):
            raise ImmutableVersion("published versions cannot be deleted; mark them unavailable instead")
        return super().delete(*args, **kwargs)

    # --- manifest helpers ---
    @property
    def config_schema(self) -> dict:
        schema = self.manifest.get("configSchema")
        return schema if isinstance(schema, dict) else {"type": "object"}

    @property
    def resources(self) -> dict:
        resources = self.manifest.get("resources")
        return resources if isinstance(resources, dict) else {}

    @property
    def handlers(self) -> dict:
        handlers = self.manifest.get("handlers")
        return handlers if isinstance(handlers, dict) else {}
