"""Creating handler runs: the one way a run comes to exist and be queued. Events
(``runtime.events``), timer slots (``runtime.dispatcher``), retries (``runtime.worker``),
replays and "run now" (the console) all insert queued rows here; the rows are sent to
the ``handlers`` queue by ``runtime.messages`` when their transaction commits, and a
worker takes them from there (``runtime.worker``). Housekeeping that sends or settles
runs left behind (lost messages, lost workers) is here too.

A run is a HandlerRun row first and a Celery message second: the message carries only the
run's id, so a message lost between commit and send is found again
(``requeue_stranded_runs``) and a message sent twice is harmless (the worker's claim).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from marketplace import access
from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import Conflict, InvalidInput, QuotaExceeded
from marketplace.models import HandlerRun, Instance

from .messages import publish_runs
from .schedules import iso

log = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


# --- Creating ---------------------------------------------------------------------------

def enqueue_runs(runs: list[HandlerRun], *, countdown: float | None = None,
                 send: Callable[[list[int]], None] | None = None) -> list[HandlerRun]:
    """Insert queued runs and send them when the surrounding transaction commits, with
    ``send`` if given (events posted one by one: ``ingress.send``)."""
    if not runs:
        return []
    runs = HandlerRun.objects.bulk_create(runs)
    ids = [run.pk for run in runs]
    transaction.on_commit(lambda: send(ids) if send else publish_runs(ids, countdown=countdown))
    return runs


# --- The queued-runs cap (JUNCTION_INSTANCE_MAX_QUEUED_RUNS) ---------------------------------

QUEUE_FULL = "queue_full"


def queue_rooms(instance_ids) -> dict[int, int]:
    """How many more runs each instance may have queued, by id (one query on the partial
    index of queued runs). No cap (setting 0): a room no burst reaches.

    Events, polled items and timer slots check it; retries, replays and runs started by
    hand do not (they are bounded by runs that exist, or by a person). Two posters racing
    at the cap can each pass: the cap holds to within the number of concurrent posters."""
    cap = settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS
    ids = set(instance_ids)
    if cap <= 0:
        return dict.fromkeys(ids, 2**62)
    counts = dict(
        HandlerRun.objects.filter(status=RunStatus.QUEUED, instance_id__in=ids)
        .values_list("instance_id").annotate(n=Count("pk")).values_list("instance_id", "n")
    )
    return {instance_id: max(0, cap - counts.get(instance_id, 0)) for instance_id in ids}


def require_queue_room(*, instance: Instance, adding: int) -> None:
    """Raise QuotaExceeded (code ``queue_full``) if ``adding`` more queued runs would take
    the instance beyond JUNCTION_INSTANCE_MAX_QUEUED_RUNS."""
    if not adding:
        return
    room = queue_rooms([instance.pk])[instance.pk]
    if room < adding:
        cap = settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS
        raise QuotaExceeded(
            f"{instance.name} has {cap - room} runs waiting, at most {cap}: {adding} more refused; "
            "try again once its runs have caught up",
            field="instance", code=QUEUE_FULL,
        )


def enqueue_run(*, instance: Instance, handler: str, trigger: str, input: dict | None = None,
                first_run: HandlerRun | None = None, attempt: int = 1, idempotency_key: str | None = None,
                countdown: float | None = None) -> HandlerRun:
    """Queue one run of ``handler``. Refuses unknown handlers, disabled instances and
    instances not live (installing, upgrading, uninstalling, install failed)."""
    if handler not in instance.version.handlers:
        raise InvalidInput(f"{instance.version} has no handler {handler!r}", field="handler")
    if not instance.enabled:
        raise Conflict(f"{instance.name} is disabled: its handlers do not run", field="instance")
    if not instance.runs_handlers:
        raise Conflict(f"{instance.name} is {instance.get_state_display().lower()}: its handlers do not run now",
                       field="instance")
    run = HandlerRun(
        instance=instance, handler=handler, trigger=trigger, input=input or {},
        first_run=first_run, attempt=attempt, idempotency_key=idempotency_key,
    )
    return enqueue_runs([run], countdown=countdown)[0]


def run_timer_now(*, schedule, user=None) -> HandlerRun:
    """Queue an extra run of a timer now (admin "run now"); its schedule is unchanged."""
    access.require_role(user, schedule.instance.organization)
    return enqueue_run(
        instance=schedule.instance, handler=schedule.handler, trigger=Trigger.MANUAL,
        input={"lastRunAt": iso(schedule.last_run_at)},
    )


@transaction.atomic
def replay_run(*, run: HandlerRun, user=None) -> HandlerRun:
    """Run a finished run's handler again with its original input, as a new queued run
    linked to the first run of its chain (``first_run``, next ``attempt``)."""
    run = HandlerRun.objects.select_related("instance__version", "instance__organization").get(pk=run.pk)
    access.require_role(user, run.instance.organization)
    if run.status not in FINISHED:
        raise Conflict(f"run #{run.pk} is {run.status}; only finished runs can be replayed", field="run")
    first = HandlerRun.objects.select_for_update().get(pk=run.first_run_id or run.pk)
    last_attempt = max(first.attempt, first.attempts.aggregate(n=Max("attempt"))["n"] or 0)
    return enqueue_run(
        instance=run.instance, handler=run.handler, trigger=Trigger.REPLAY, input=run.input,
        first_run=first, attempt=last_attempt + 1,
    )


# --- Housekeeping --------------------------------------------------------------------------

def requeue_stranded_runs(*, now=None, limit: int = 10_000) -> int:
    """Send again the runs still queued and never picked up well after they were created:
    their message was lost (a crash between commit and send, a broker outage). A message
    that was only slow is harmless twice: the claim lets one pickup run it."""
    now = now or timezone.now()
    after = timedelta(seconds=settings.JUNCTION_REQUEUE_AFTER_SECONDS)
    retry_after = after + timedelta(seconds=settings.JUNCTION_RETRY_MAX_DELAY_SECONDS)  # retries wait on purpose
    stranded = HandlerRun.objects.filter(status=RunStatus.QUEUED, starts=0).filter(
        (Q(created_at__lt=now - after) & ~Q(trigger=Trigger.RETRY))
        | Q(trigger=Trigger.RETRY, created_at__lt=now - retry_after)
    )
    ids = list(stranded.order_by("pk").values_list("pk", flat=True)[:limit])
    if ids:
        log.warning("re-sending %d queued runs whose messages were lost", len(ids))
        publish_runs(ids)
    return len(ids)


def fail_stale_runs(*, now=None) -> int:
    """Runs still ``running`` JUNCTION_RUN_REAP_MARGIN_SECONDS past the hard time limit have
    no worker left (a worker killed with its pool, a web process that died mid-run; no task
    lives past the hard limit, and run_now's runs end before it): record them as failed
    (``worker_lost``). Cheap enough for the dispatcher tick: the partial index
    ``handlerrun_unfinished_idx`` holds only queued and running runs."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.JUNCTION_RUN_TIME_LIMIT + settings.JUNCTION_RUN_REAP_MARGIN_SECONDS)
    stale = HandlerRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=cutoff)
    failed = stale.update(
        status=RunStatus.FAILED, error_code="worker_lost", finished_at=now,
        error_message="the run's worker stopped before it finished (time limit, memory or crash)",
    )
    if failed:
        log.warning("recorded %d runs whose worker was lost as worker_lost", failed)
    return failed
