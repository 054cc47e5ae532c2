"""The runtime's own tables: when each installed timer runs next, which items each
polling timer has already posted, each instance's webhook token bucket and the one-time
callback URLs handlers mint.

Timers live here rather than as django-celery-beat PeriodicTask rows: beat reloads every
enabled PeriodicTask whenever one changes, which does not survive 100,000 installed timers
(see SANDBOX_NOTES "Celery beat at scale"). One PeriodicTask runs the dispatcher
(``runtime.dispatcher.dispatch_due``), which claims what is due from this table.
"""
from __future__ import annotations

import hashlib

from django.db import models
from django.db.models import Q

from marketplace.querysets import OrganizationRowsQuerySet

__all__ = ["CallbackToken", "SeenItem", "TimerSchedule", "WebhookBucket"]


class TimerScheduleQuerySet(OrganizationRowsQuerySet):
    """Timers are the instance's organization's: seen and changed (paused, moved, run now)
    by its members only."""

    organization_path = "instance__organization"

    def for_listing(self):
        return self.select_related("instance__organization", "instance__version__integration")

    def enabled(self):
        return self.filter(enabled=True)

    def due(self, now):
        """Enabled timers whose next slot has come: what the dispatcher claims, oldest first."""
        return self.filter(enabled=True, next_run_at__lte=now).order_by("next_run_at")


class TimerSchedule(models.Model):
    """When one timer handler of one instance runs next.

    Exactly one of ``every_seconds`` (a fixed period, at a per-timer offset so that timers
    installed together do not all fire in the same second) or ``cron`` (five fields,
    evaluated in ``timezone``) is set. ``next_run_at`` is always UTC. The rows are kept in
    step with the instance by ``runtime.schedules.sync_schedules``: a disabled instance has
    no enabled rows, and deleting the instance deletes them. One timer can be paused, or
    its next run moved, by hand (``runtime.schedules.update_timer``).
    """

    instance = models.ForeignKey("marketplace.Instance", on_delete=models.CASCADE, related_name="timer_schedules")
    handler = models.CharField(max_length=120)
    every_seconds = models.PositiveIntegerField(null=True, blank=True)
    cron = models.CharField(max_length=120, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    next_run_at = models.DateTimeField()
    last_run_at = models.DateTimeField(null=True, blank=True)
    # ``enabled`` is derived (instance enabled and live, timer not paused) and is what the dispatcher's
    # partial index reads; ``paused`` is the one timer switched off by hand.
    enabled = models.BooleanField(default=True, editable=False)
    paused = models.BooleanField(
        default=False, help_text="Paused by hand: this timer does not run, the instance's other handlers do."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TimerScheduleQuerySet.as_manager()

    class Meta:
        ordering = ["next_run_at"]
        constraints = [
            models.UniqueConstraint(fields=["instance", "handler"], name="%(app_label)s_%(class)s_one_per_handler"),
            models.CheckConstraint(
                condition=(Q(every_seconds__isnull=False) & Q(cron=""))
                | (Q(every_seconds__isnull=True) & ~Q(cron="")),
                name="%(app_label)s_%(class)s_every_or_cron",
            ),
        ]
        indexes = [
            # The dispatcher's due query: enabled rows with next_run_at <= now, oldest first.
            # Partial, so 100k disabled rows cost nothing per tick.
            models.Index(fields=["next_run_at"], condition=Q(enabled=True), name="timerschedule_due_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.handler} ({self.describe()})"

    def describe(self) -> str:
        if self.every_seconds:
            return f"every {format_seconds(self.every_seconds)}"
        return f"cron {self.cron} {self.timezone}"

    @property
    def spec(self) -> dict:
        """The schedule as the manifest writes it."""
        if self.every_seconds:
            return {"every": format_seconds(self.every_seconds)}
        return {"cron": self.cron, "timezone": self.timezone}


def format_seconds(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


class SeenItemQuerySet(OrganizationRowsQuerySet):
    """The ids a polling timer remembers are the instance's organization's alone."""

    organization_path = "instance__organization"

    def for_listing(self):
        return self.select_related("instance__version__integration")


class SeenItem(models.Model):
    """An item id a polling timer (a timer with ``emits``) has already posted as an event.
    Bounded per (instance, handler): the oldest ids are forgotten first."""

    instance = models.ForeignKey("marketplace.Instance", on_delete=models.CASCADE, related_name="seen_items")
    handler = models.CharField(max_length=120)
    item_id = models.CharField(max_length=255)
    seen_at = models.DateTimeField()

    objects = SeenItemQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["instance", "handler", "item_id"], name="%(app_label)s_%(class)s_unique_item"
            ),
        ]
        indexes = [
            # Forgetting the oldest ids of one polling timer beyond the cap (pk order = age).
            models.Index(fields=["instance", "handler", "id"], name="seenitem_age_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.handler}: {self.item_id}"


class WebhookBucket(models.Model):
    """An instance's webhook token bucket (``runtime.throttle``): ``tokens`` left as of
    ``refilled_at`` (seconds since the epoch), refilled at JUNCTION_WEBHOOK_RATE a second up
    to JUNCTION_WEBHOOK_BURST. Taken by one conditional UPDATE, so every web process shares
    it whatever the database."""

    instance = models.OneToOneField(
        "marketplace.Instance", on_delete=models.CASCADE, primary_key=True, related_name="webhook_bucket"
    )
    tokens = models.FloatField()
    refilled_at = models.FloatField()

    def __str__(self) -> str:
        return f"{self.instance_id}: {self.tokens:.1f} left"


class CallbackToken(models.Model):
    """A one-time callback URL minted by a handler (``ctx.callback.url``): posting to it
    posts ``event`` to ``instance`` once, before ``expires_at``. Only a SHA-256 of the
    secret in the URL is stored; ``used_at`` is set by the one post that consumed it
    (``runtime.callbacks.consume``)."""

    instance = models.ForeignKey("marketplace.Instance", on_delete=models.CASCADE, related_name="callback_tokens")
    event = models.CharField(max_length=100)
    digest = models.CharField(max_length=64, unique=True)  # serves the lookup of every callback post
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            # Housekeeping's sweep of tokens expired a while ago (runtime.callbacks.prune).
            models.Index(fields=["expires_at"], name="callbacktoken_expiry_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} for {self.instance_id} (until {self.expires_at:%Y-%m-%d %H:%M})"

    @staticmethod
    def digest_of(secret: str) -> str:
        # The secret is 256 random bits: a plain hash suffices and keeps the lookup cheap.
        return hashlib.sha256(secret.encode()).hexdigest()
