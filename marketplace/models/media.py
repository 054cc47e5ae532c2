from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models

from ..querysets import ApiSchemaQuerySet, AttachmentQuerySet
from ..storages import private_storage


def attachment_path(instance: Attachment, filename: str) -> str:
    # Random folder: two uploads of "manual.pdf" never collide or overwrite each other.
    return f"attachments/{instance.integration_id}/{uuid.uuid4().hex}/{PurePosixPath(filename).name}"


class Attachment(models.Model):
    """A document shared with an integration (manuals, data sheets). Always downloaded,
    never rendered inline; executable and HTML types are refused on upload. Its file is in
    the private storage: reachable only through the download view, which checks that the
    integration is visible to the user (an attachment of a private integration is private)."""

    integration = models.ForeignKey("marketplace.Integration", on_delete=models.CASCADE, related_name="attachments")
    file = models.FileField(upload_to=attachment_path, storage=private_storage, max_length=300)
    title = models.CharField(max_length=200)
    content_type = models.CharField(max_length=100, editable=False)
    size = models.PositiveBigIntegerField(editable=False)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    objects = AttachmentQuerySet.as_manager()

    class Meta:
        ordering = ["integration", "title"]

    def __str__(self) -> str:
        return self.title

    @property
    def filename(self) -> str:
        return PurePosixPath(self.file.name).name


class ApiSchema(models.Model):
    """An OpenAPI (3.x) or Swagger (2.0) document uploaded for an integration; a resource
    of the manifest may name it in ``apiSchema``. Indexing into endpoints and models is
    done by the packaging issue's indexer."""

    integration = models.ForeignKey("marketplace.Integration", on_delete=models.CASCADE, related_name="api_schemas")
    name = models.CharField(max_length=200, help_text="File name the manifest refers to, e.g. openapi.json.")
    source = models.TextField(help_text="The document as uploaded (JSON or YAML).")
    document = models.JSONField(default=dict, editable=False)
    title = models.CharField(max_length=200, blank=True)
    api_version = models.CharField(max_length=50, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", editable=False
    )
    uploaded_at = models.DateTimeField(auto_now_add=True)

    objects = ApiSchemaQuerySet.as_manager()

    class Meta:
        ordering = ["integration", "name"]
        verbose_name = "API schema"
        constraints = [
            models.UniqueConstraint(fields=["integration", "name"], name="%(app_label)s_%(class)s_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name
