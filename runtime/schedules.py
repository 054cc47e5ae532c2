"""Timers: parsing manifest schedules, computing slots and keeping TimerSchedule rows in step
with instances. The tick that turns due rows into queued HandlerRuns is
``runtime.dispatcher``.

This module also owns the django-celery-beat PeriodicTask rows (``ensure_periodic_tasks``):
exactly two, whatever the number of installed timers — the dispatcher tick and housekeeping.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from marketplace import access
from marketplace.exceptions import InvalidInput
from marketplace.models import Instance
from marketplace.packaging import schedules as packaging_schedules

from .models import TimerSchedule

# Beyond this many candidate times without a match, a cron expression is treated as never firing.
CRON_SEARCH_LIMIT = 5000


# --- Parsing --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule(packaging_schedules.Schedule):
    """A parsed manifest ``schedule`` (``every_seconds`` or ``cron`` + ``timezone``) that
    knows its slots."""

    def next_after(self, after: datetime, *, offset: int = 0) -> datetime:
        """The first slot strictly after ``after`` (aware), as an aware UTC datetime."""
        if self.every_seconds:
            return next_every(self.every_seconds, after, offset=offset)
        return next_cron(self.cron, self.timezone, after)


def parse_schedule(spec) -> Schedule:
    """Parse a handler's ``schedule`` with package validation's own parser and limits
    (``JUNCTION_MIN_TIMER_SECONDS``). Raises ValueError with a message fit for a publisher."""
    parsed = packaging_schedules.parse_schedule(spec, min_seconds=settings.JUNCTION_MIN_TIMER_SECONDS)
    return Schedule(every_seconds=parsed.every_seconds, cron=parsed.cron, timezone=parsed.timezone)


# --- Slots ------------------------------------------------------------------------------------

def every_offset(instance_id: int, handler: str, every_seconds: int) -> int:
    """A stable per-timer phase: 10,000 timers of ``every: 1m`` installed in one batch fire
    spread over the minute instead of all at :00."""
    return zlib.crc32(f"{instance_id}:{handler}".encode()) % every_seconds


def next_every(every_seconds: int, after: datetime, *, offset: int = 0) -> datetime:
    """Slots are the UTC instants ``offset + k * every_seconds`` seconds after the epoch."""
    ts = after.timestamp()
    k = int((ts - offset) // every_seconds) + 1
    return datetime.fromtimestamp(offset + k * every_seconds, tz=UTC)


def _wildcard_hour(expr: str) -> bool:
    return expr.split()[1].startswith("*")


def _local_to_utc(naive: datetime, zone: ZoneInfo, *, both_folds: bool) -> list[datetime]:
    """The UTC instants a wall-clock time stands for. A time skipped by a spring-forward
    gap runs when the clock has moved on (fold=0 offset: 02:30 → 03:30 CEST); a time
    repeated by a fall-back runs once (the first pass) unless ``both_folds``."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    repeated = second.astimezone(zone).replace(tzinfo=None) == naive
    if repeated and both_folds:
        return [first, second]
    return [first]


def next_cron(expr: str, tz: str, after: datetime) -> datetime:
    """The first cron slot strictly after ``after``, evaluated on the wall clock of ``tz``.

    DST: a wall-clock time that does not exist (spring forward) runs right after the jump
    (coinciding slots are one slot); a wall-clock time that happens twice (fall back) runs
    once, except for expressions whose hour field is a wildcard (``*/15 * * * *``), which
    keep their rhythm through the repeated hour — as Vixie cron does.
    """
    zone = ZoneInfo(tz)
    after = after.astimezone(UTC)
    both_folds = _wildcard_hour(expr)
    # Fast path: no clock change near ``after`` or before the next wall-clock match.
    local_after = after.astimezone(zone)
    candidate = croniter(expr, local_after.replace(tzinfo=None)).get_next(datetime)
    instants = _local_to_utc(candidate, zone, both_folds=False)
    offset = local_after.utcoffset()
    if (
        instants[0] > after
        and (after - timedelta(hours=2)).astimezone(zone).utcoffset() == offset
        and instants[0].astimezone(zone).utcoffset() == offset
        and candidate.replace(tzinfo=zone, fold=1).utcoffset() == offset
    ):
        return instants[0]
    # Start a little early: with folds, an earlier wall-clock time can be a later instant
    # (no zone shifts its clock by more than two hours at once).
    start = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=2)
    it = croniter(expr, start)
    best: datetime | None = None
    best_local: datetime | None = None
    for _ in range(CRON_SEARCH_LIMIT):
        candidate = it.get_next(datetime)
        if best_local is not None and candidate > best_local + timedelta(hours=2):
            return best
        for instant in _local_to_utc(candidate, zone, both_folds=both_folds):
            if instant > after and (best is None or instant < best):
                best, best_local = instant, candidate
    if best is not None:
        return best
    raise ValueError(f"cron expression {expr!r} never fires")


def next_slot(row: TimerSchedule, after: datetime) -> datetime:
    return schedule_of(row).next_after(after, offset=_offset_of(row))


def schedule_of(row: TimerSchedule) -> Schedule:
    return Schedule(every_seconds=row.every_seconds, cron=row.cron, timezone=row.timezone)


def _offset_of(row: TimerSchedule) -> int:
    return every_offset(row.instance_id, row.handler, row.every_seconds) if row.every_seconds else 0


def timer_handlers(instance: Instance) -> dict[str, dict]:
    """The instance's timer handlers by name, from its version's manifest."""
    return {
        name: spec
        for name, spec in instance.version.handlers.items()
        if isinstance(spec, dict) and spec.get("type") == "timer"
    }


# --- Keeping rows in step with instances -------------------------------------------------

def sync_schedules(instance: Instance, *, now: datetime | None = None) -> list[TimerSchedule]:
    """Make the instance's TimerSchedule rows match its version's timer handlers and its
    enabled flag and state (``Instance.runs_handlers``): rows for removed handlers go, new handlers get rows, a changed schedule or
    a re-enable moves ``next_run_at`` to the next slot after now. Called by the install
    services (install, reconfigure, upgrade, enable/disable) inside their transaction;
    uninstall and delete cascade. Raises InvalidInput for a schedule that does not parse.
    """
    now = now or timezone.now()
    existing = {row.handler: row for row in TimerSchedule.objects.select_for_update().filter(instance=instance)}
    wanted = timer_handlers(instance)
    stale = [row.pk for name, row in existing.items() if name not in wanted]
    if stale:
        TimerSchedule.objects.filter(pk__in=stale).delete()
    rows = []
    for name, spec in wanted.items():
        try:
            schedule = parse_schedule(spec.get("schedule"))
        except ValueError as exc:
            if not instance.enabled and name in existing:
                existing[name].enabled = False  # disabling never fails on a bad manifest
                existing[name].save(update_fields=["enabled", "updated_at"])
                continue
            raise InvalidInput(str(exc), field=f"handlers.{name}.schedule") from None
        row = existing.get(name)
        if row is None:
            row = TimerSchedule(instance=instance, handler=name, enabled=instance.enabled)
            changed = True
        else:
            changed = schedule != schedule_of(row) or (instance.runs_handlers and not row.paused and not row.enabled)
        row.every_seconds, row.cron, row.timezone = schedule.every_seconds, schedule.cron, schedule.timezone
        # Held (disabled) while the instance is installing, upgrading or uninstalling.
        row.enabled = instance.runs_handlers and not row.paused
        if changed:
            row.next_run_at = next_slot(row, now)
        row.save()
        rows.append(row)
    return rows


@transaction.atomic
def update_timer(
    *, schedule: TimerSchedule, paused: bool | None = None, next_run_at: datetime | None = None,
    user=None, now: datetime | None = None,
) -> TimerSchedule:
    """Pause or resume one timer, or move its next run (the console's edit form).

    Resuming moves ``next_run_at`` to the next slot after now (a paused timer does not
    catch up), unless ``next_run_at`` is given; a given ``next_run_at`` may not lie in the
    past. Later slots follow the schedule as usual.
    """
    now = now or timezone.now()
    access.require_role(user, schedule.instance.organization)
    row = TimerSchedule.objects.select_for_update().select_related("instance").get(pk=schedule.pk)
    if next_run_at is not None and next_run_at < now - timedelta(seconds=1):
        raise InvalidInput("the next run cannot be in the past", field="next_run_at")
    resumed = paused is False and row.paused
    if paused is not None:
        row.paused = paused
    row.enabled = row.instance.runs_handlers and not row.paused
    if next_run_at is not None:
        row.next_run_at = next_run_at
    elif resumed:
        row.next_run_at = next_slot(row, now)
    row.save(update_fields=["paused", "enabled", "next_run_at", "updated_at"])
    return row


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


# --- The PeriodicTask rows this module owns ------------------------------------------------

DISPATCH_TASK_NAME = "junction: dispatch due timers"
HOUSEKEEPING_TASK_NAME = "junction: housekeeping"


def ensure_periodic_tasks() -> None:
    """Create or update the two beat entries (idempotent; called after every migrate).
    Saving a PeriodicTask marks the schedule changed for beat; unchanged rows are left
    alone so beat does not reload for nothing."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    wanted = [
        (DISPATCH_TASK_NAME, "runtime.tasks.dispatch_timers", settings.JUNCTION_DISPATCH_EVERY_SECONDS,
         # A tick still queued after a few intervals is dropped: the next one does its work.
         max(5, settings.JUNCTION_DISPATCH_EVERY_SECONDS * 5)),
        (HOUSEKEEPING_TASK_NAME, "runtime.tasks.housekeeping", settings.JUNCTION_HOUSEKEEPING_EVERY_SECONDS,
         settings.JUNCTION_HOUSEKEEPING_EVERY_SECONDS),
    ]
    for name, task, every, expires in wanted:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        entry = PeriodicTask.objects.filter(name=name).first()
        fields = {"task": task, "interval": interval, "expire_seconds": expires, "enabled": True,
                  "queue": "celery", "crontab": None, "solar": None, "clocked": None}
        if entry is None:
            PeriodicTask.objects.create(name=name, **fields)
        elif any(getattr(entry, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(entry, k, v)
            entry.save()
