from __future__ import annotations

import uuid

from django.db import models
from django.urls import reverse

from ..choices import Visibility
from ..querysets import IntegrationQuerySet


class Category(models.Model):
    """A shelf of the marketplace ("ERP", "Printing"); integrations have at most one."""

    name = models.CharField(max_length=80, unique=True)
    slug = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    ordering = models.PositiveIntegerField(default=0, help_text="Lower numbers come first.")

    class Meta:
        ordering = ["ordering", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


def icon_path(instance: Integration, filename: str) -> str:
    # A fresh name per upload: browsers and CDNs never serve a stale icon.
    return f"icons/{instance.slug}/{uuid.uuid4().hex}.png"


def thumbnail_path(instance: Integration, filename: str) -> str:
    return f"icons/{instance.slug}/{uuid.uuid4().hex}-thumb.png"


class Integration(models.Model):
    """What a publisher builds and the marketplace lists: metadata here, content in its
    versions (one optional draft and numbered, immutable published versions)."""

    owner = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="integrations")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=120, unique=True)
    summary = models.CharField(max_length=240, blank=True, help_text="One line shown on marketplace cards.")
    description = models.TextField(blank=True, help_text="Markdown.")
    category = models.ForeignKey(
        "marketplace.Category", on_delete=models.SET_NULL, null=True, blank=True, related_name="integrations"
    )
    icon = models.ImageField(upload_to=icon_path, blank=True)
    icon_thumbnail = models.ImageField(upload_to=thumbnail_path, blank=True, editable=False)
    forked_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="forks"
    )
    visibility = models.CharField(max_length=16, choices=Visibility.choices, default=Visibility.PUBLIC)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = IntegrationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Names are unique within an organization; forks must pick a new one.
            models.UniqueConstraint(fields=["owner", "name"], name="%(app_label)s_%(class)s_unique_name_per_owner"),
        ]
        indexes = [
            # The marketplace listing: public integrations by category, sorted by name.
            models.Index(fields=["visibility", "category", "name"], name="integration_listing_idx"),
            # The catalog's order (API list, marketplace page): a page is read in index order
            # and the scan stops after it, instead of sorting every visible integration.
            models.Index(fields=["name", "id"], name="integration_name_order_idx"),
            # Counting what a user sees (public, or owned by their organizations) from the
            # index alone, without reading the rows and their descriptions.
            models.Index(fields=["visibility", "owner"], name="integration_visible_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("marketplace:integration-detail", kwargs={"slug": self.slug})

    @property
    def draft(self):
        return self.versions.drafts().first()

    def latest_published(self):
        return self.versions.published().order_by("-number").first()

    def latest_available(self):
        return self.versions.available().order_by("-number").first()
