from __future__ import annotations

from django.db import models
from django.db.models import Q

from ..choices import RunStatus, Trigger
from ..querysets import RunQuerySet


class HandlerRun(models.Model):
    """One run of one handler of one instance: what started it, how it went, its logs
    (capped), its result or its error. Retries and replays are runs of their own, linked
    to the first run through ``first_run``."""

    # No index of its own: handlerrun_history_idx starts with instance_id and serves the
    # foreign key's lookups (an instance's runs, the cascade when it is uninstalled).
    instance = models.ForeignKey(
        "marketplace.Instance", on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    handler = models.CharField(max_length=120)
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    input = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    logs = models.JSONField(default=list, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    error_file = models.CharField(max_length=255, blank=True)
    error_line = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveSmallIntegerField(default=1)
    # Indexed only where set (handlerrun_attempts_idx): most runs are first runs.
    first_run = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="attempts", db_index=False
    )
    # Set for runs enqueued by the scheduler or a retry: one run per (schedule, slot).
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    starts = models.PositiveSmallIntegerField(default=0, help_text="How many times a worker picked the run up.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # An instance's run history, newest first (instance.runs.order_by("-created_at"),
            # the console's runs of one instance).
            models.Index(fields=["instance", "-created_at"], name="handlerrun_history_idx"),
            # The console's run list, newest first; pruning finds the newest old run.
            models.Index(fields=["created_at"], name="handlerrun_age_idx"),
            # The queued-runs cap: how many runs of an instance wait (runtime.runs.queued_counts).
            # Partial, so it holds only the few rows that are queued.
            models.Index(fields=["instance"], condition=Q(status="queued"), name="handlerrun_queued_idx"),
            # A run's retries and replays (replay_run, the delete cascade, pruning's kept
            # chains); a full index would hold a NULL for nearly every run.
            models.Index(fields=["first_run"], name="handlerrun_attempts_idx", condition=Q(first_run__isnull=False)),
            # Runs not finished, a sliver of the table: the console's "queued"/"running"
            # filters, housekeeping's lost messages and the dispatcher tick's look for runs
            # whose worker vanished (runtime.runs.fail_stale_runs, every few seconds).
            models.Index(
                fields=["status", "created_at"], name="handlerrun_unfinished_idx",
                condition=Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.handler} #{self.pk} ({self.status})"
