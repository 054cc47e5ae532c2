"""Deleting an integration and everything it owns.

The source documents insist: deleting an integration deletes every deployed instance of
it. The cascade is in the foreign keys (versions → instances → bindings, storage, cache,
runs); files go through the post_delete receivers in ``marketplace.signals``. This module
adds the preview the admin's confirmation page shows, instances first.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction
from django.db.models import Count

from .. import access
from ..models import (
    ApiSchema,
    Attachment,
    CacheEntry,
    ContainerEntry,
    HandlerRun,
    Instance,
    Integration,
    IntegrationVersion,
    ResourceBinding,
)

if TYPE_CHECKING:
    from ..querysets import AnyUser


@dataclass
class DeletionSummary:
    """What deleting an integration takes with it."""

    integration: Integration
    instances: list[Instance] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def lines(self) -> list[str]:
        return [f"{count} {label}" for label, count in self.counts.items() if count]


def deletion_summary(integration: Integration) -> DeletionSummary:
    instances = list(
        Instance.objects.of_integration(integration).select_related("organization", "version").order_by("organization", "name")
    )
    return DeletionSummary(
        integration=integration,
        instances=instances,
        counts={
            "installed instances": len(instances),
            "versions": IntegrationVersion.objects.filter(integration=integration).count(),
            "attachments": Attachment.objects.filter(integration=integration).count(),
            "API schemas": ApiSchema.objects.filter(integration=integration).count(),
            "resource bindings": ResourceBinding.objects.filter(instance__version__integration=integration).count(),
            "container entries": ContainerEntry.objects.filter(instance__version__integration=integration).count(),
            "cache entries": CacheEntry.objects.filter(instance__version__integration=integration).count(),
            "handler runs": HandlerRun.objects.filter(instance__version__integration=integration).count(),
            "timer schedules": _timer_schedules(integration),
        },
    )


def _timer_schedules(integration: Integration) -> int:
    # Counted through the instances' reverse relation: the runtime's model is not imported
    # here (the runtime builds on marketplace, docs/services.md "Layers").
    instances = Instance.objects.filter(version__integration=integration)
    return instances.aggregate(n=Count("timer_schedules"))["n"]


@transaction.atomic
def delete_integration(*, integration: Integration, user: AnyUser = None) -> DeletionSummary:
    """Delete ``integration`` with its versions, instances (and their bindings, storage,
    cache, runs and schedules), attachments, API schemas, icon and files. Forks survive
    with ``forked_from`` cleared. Returns what was deleted."""
    access.require_can_publish(user, integration)
    integration = Integration.objects.select_for_update().get(pk=integration.pk)
    summary = deletion_summary(integration)
    integration.delete()
    return summary
