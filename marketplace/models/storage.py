from __future__ import annotations

from django.db import models
from django.db.models import Q

from ..querysets import CacheEntryQuerySet, ContainerEntryQuerySet


class ContainerEntry(models.Model):
    """One value in an instance's data containers (``ctx.integration.containers*``):
    per instance, container and key, validated against the manifest's dataContainerSchemas."""

    instance = models.ForeignKey("marketplace.Instance", on_delete=models.CASCADE, related_name="container_entries")
    container = models.CharField(max_length=120)
    key = models.CharField(max_length=255)
    value = models.JSONField()
    # Bytes charged to the instance's storage quota (runtime.quotas.entry_size).
    size = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ContainerEntryQuerySet.as_manager()

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
    # Bytes charged to the instance's or the tenant's storage quota (runtime.quotas.entry_size).
    size = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)

    objects = CacheEntryQuerySet.as_manager()

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


class StorageUsage(models.Model):
    """How much one storage scope holds, charged against its quota: an instance's
    containers and cache together (``instance`` set), or an organization's tenant
    ``ctx.cache`` (``instance`` null). Kept by ``runtime.stores`` on every write and
    delete; writers of a scope lock its row first, so two runs cannot both take the last
    of a quota. It may run high (expired entries purged by housekeeping, rows deleted by
    hand): a write that finds the scope over quota recounts it exactly before refusing."""

    organization = models.ForeignKey("marketplace.Organization", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey(
        "marketplace.Instance", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    bytes = models.BigIntegerField(default=0)
    entries = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "storage usage"
        constraints = [
            models.UniqueConstraint(
                fields=["instance"], condition=Q(instance__isnull=False),
                name="%(app_label)s_%(class)s_one_per_instance",
            ),
            models.UniqueConstraint(
                fields=["organization"], condition=Q(instance__isnull=True),
                name="%(app_label)s_%(class)s_one_per_tenant",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.bytes} bytes in {self.entries} entries"
