"""The timer dispatcher: the beat tick that claims due TimerSchedule rows and turns them
into queued HandlerRuns (``runtime.tasks.dispatch_timers`` calls ``dispatch_due``). The rows
themselves, their slots and the beat entries are kept by ``runtime.schedules``.

Guarantees of the dispatcher (``dispatch_due``):
- a due row is claimed by one dispatcher only (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
  an IMMEDIATE transaction on SQLite), and in the same transaction its ``next_run_at`` moves
  to the first slot after now: after downtime a timer runs once, not once per missed slot;
- each (schedule, slot) gets one HandlerRun at most: ``HandlerRun.idempotency_key`` is
  unique, so even a second beat cannot run a slot twice;
- task messages are sent after the commit, so a worker never picks up a run it cannot see;
- a slot of an instance with JUNCTION_INSTANCE_MAX_QUEUED_RUNS runs waiting is not queued
  but recorded as a failed run (``queue_full``), so a backlog cannot grow without bound.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun

from . import postgres
from .messages import publish_runs
from .models import TimerSchedule
from .runs import QUEUE_FULL, queue_rooms
from .schedules import iso, next_slot

log = logging.getLogger(__name__)


@dataclass
class DispatchReport:
    """What one dispatcher tick did. ``batches`` holds, per committed batch, the time its
    messages were sent and the slots it enqueued (for the scheduler benchmark)."""

    claimed: int = 0
    enqueued: int = 0
    skipped_disabled: int = 0
    skipped_full: int = 0
    duplicates: int = 0
    batches: list[tuple[float, list[datetime]]] = field(default_factory=list)
    seconds: float = 0.0


def _queue_full_record(row: TimerSchedule, slot: datetime, now: datetime) -> HandlerRun:
    """A timer slot skipped because its instance has JUNCTION_INSTANCE_MAX_QUEUED_RUNS runs
    waiting, recorded as a failed run (``queue_full``) in the instance's history; it is
    never sent to a worker, retried or run later. The slot's idempotency key is taken, as
    a run's would be, so a second dispatcher does not run it either."""
    cap = settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS
    return HandlerRun(
        instance_id=row.instance_id, handler=row.handler, trigger=Trigger.TIMER,
        input={"lastRunAt": iso(row.last_run_at)}, idempotency_key=idempotency_key(row.pk, slot),
        status=RunStatus.FAILED, error_code=QUEUE_FULL, finished_at=now, duration_ms=0,
        error_message=f"slot {iso(slot)} skipped: the instance already has {cap} runs waiting (at most {cap})",
    )


def idempotency_key(schedule_id: int, slot: datetime) -> str:
    return f"timer:{schedule_id}:{int(slot.timestamp())}"


def dispatch_due(*, now: datetime | None = None, batch_size: int | None = None,
                 max_seconds: float | None = None, send=None) -> DispatchReport:
    """Claim due timers in batches and enqueue one run per (schedule, slot).

    Each batch is one short transaction; messages go out when it commits. Stops when
    nothing is due or after ``max_seconds`` (the rest waits for the next tick). ``now``
    defaults to the clock, read again for every batch. ``send(run_ids)`` publishes a
    committed batch (default: ``runtime.messages.publish_runs``).
    """
    send = publish_runs if send is None else send
    batch_size = batch_size or settings.JUNCTION_DISPATCH_BATCH
    max_seconds = settings.JUNCTION_DISPATCH_MAX_SECONDS if max_seconds is None else max_seconds
    fixed_now = now
    report = DispatchReport()
    started = time.monotonic()
    while True:
        tick = fixed_now or timezone.now()
        # Most ticks find nothing: say so without a transaction (on SQLite, an IMMEDIATE
        # transaction takes the write lock that the web process needs too).
        if not TimerSchedule.objects.due(tick).exists():
            break
        with transaction.atomic():
            rows = list(
                TimerSchedule.objects.due(tick)
                .select_for_update(skip_locked=True, of=("self",))
                .select_related("instance")
                .only(
                    "id", "instance_id", "handler", "every_seconds", "cron", "timezone",
                    "next_run_at", "last_run_at", "enabled", "instance__enabled",
                )[:batch_size]
            )
            if not rows:
                break
            runs, slots, refused = [], [], []
            rooms = queue_rooms({row.instance_id for row in rows if row.instance.enabled})
            for row in rows:
                slot = row.next_run_at
                if not row.instance.enabled:  # kept in step by sync_schedules; this heals rows changed behind its back
                    row.enabled = False
                    report.skipped_disabled += 1
                elif rooms[row.instance_id] <= 0:
                    refused.append(_queue_full_record(row, slot, tick))
                else:
                    rooms[row.instance_id] -= 1
                    runs.append(HandlerRun(
                        instance_id=row.instance_id, handler=row.handler, trigger=Trigger.TIMER,
                        input={"lastRunAt": iso(row.last_run_at)},
                        idempotency_key=idempotency_key(row.pk, slot),
                    ))
                    slots.append(slot)
                    row.last_run_at = tick
                row.next_run_at = next_slot(row, max(tick, slot))
            postgres.advance_timers(rows)
            created = _insert_runs(runs)
            if refused:
                report.skipped_full += len(_insert_runs(refused))
                log.warning("skipped %d timer slots: their instances' queues are full", len(refused))
            report.claimed += len(rows)
            report.enqueued += len(created)
            report.duplicates += len(runs) - len(created)
            ids = [run.pk for run in created]
            batch_slots = [slot for run, slot in zip(runs, slots) if run.pk is not None]

            def after_commit(ids=ids, batch_slots=batch_slots):
                send(ids)
                report.batches.append((time.time(), batch_slots))

            transaction.on_commit(after_commit)
        if len(rows) < batch_size or time.monotonic() - started > max_seconds:
            break
    report.seconds = time.monotonic() - started
    if report.claimed:
        log.info("dispatched %d timer runs (%d claimed) in %.0f ms", report.enqueued, report.claimed,
                 report.seconds * 1000)
    return report


def _insert_runs(runs: list[HandlerRun]) -> list[HandlerRun]:
    """Insert the runs in one statement; if an idempotency key already exists (a slot run
    by another dispatcher), fall back to one insert per run and drop the duplicates."""
    if not runs:
        return []
    try:
        with transaction.atomic():
            return HandlerRun.objects.bulk_create(runs)
    except IntegrityError:
        pass
    created = []
    for run in runs:
        run.pk = None
        try:
            with transaction.atomic():
                run.save(force_insert=True)
        except IntegrityError:
            log.warning("timer slot %s already has a run; not enqueued twice", run.idempotency_key)
            continue
        created.append(run)
    return created
