from __future__ import annotations

from django.db import models
from django.db.models import Q


class ContainerEntry(models.Model):
    """One value in an instance's data containers (``ctx.integration.containers*``):
    per instance, container and key, validated against the manifest's dataContainerSchemas."""

    instance = models.ForeignKey("marketplace.Instance", on_delete=models.CASCADE, related_name="container_entries")
    container = models.CharField(max_length=120)
    key = models.CharField(max_length=255)
    value = models.JSONField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instance", "container", "key"]
        verbose_name_plural = "container entries"
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "container", "key"], name="%(app_label)s_%(class)s_unique_key"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.container}/{self.key}"


class CacheEntry(models.Model):
    """A cached value with an optional expiry. Instance-scoped for ``ctx.integration.cache*``
    (``instance`` set) or organization-scoped for the tenant ``ctx.cache`` (``instance`` null)."""

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="cache_entries")
    instance = models.ForeignKey(
        "marketplace.Instance", on_delete=models.CASCADE, null=True, blank=True, related_name="cache_entries"
    )
    key = models.CharField(max_length=255)
    value = models.JSONField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "cache entries"
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "key"], condition=Q(instance__isnull=False),
                name="%(app_label)s_%(class)s_unique_instance_key",
            ),
            models.UniqueConstraint(
                fields=["organization", "key"], condition=Q(instance__isnull=True),
                name="%(app_label)s_%(class)s_unique_tenant_key",
            ),
        ]
        indexes = [
            # The periodic purge of expired entries.
            models.Index(fields=["expires_at"], name="cacheentry_expiry_idx"),
        ]

    def __str__(self) -> str:
        return self.key
