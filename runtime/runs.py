"""Queued handler runs: creating them, sending them to the ``handlers`` queue, picking
them up in a worker, and what follows a run (retries, polled items). Replay lives here too.

A run is a HandlerRun row first and a Celery message second: the message carries only the
run's id and is sent when the transaction that created the row commits. A worker claims
the row before executing it, in the same statement stamping ``started_at`` and counting
the pickup in ``starts``; a run found ``running`` at pickup lost its worker (killed by the
hard time limit, memory, a crash) and after ``JUNCTION_RUN_MAX_STARTS`` pickups it is recorded as failed (``worker_lost``) instead of
being redelivered forever.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from marketplace import access
from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import Conflict, InvalidInput, QuotaExceeded
from marketplace.models import HandlerRun, Instance

log = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)
# Runs of these triggers are retried when the handler declares ``retry``.
RETRIED_TRIGGERS = (Trigger.TIMER, Trigger.EVENT, Trigger.RETRY)


# --- Creating and sending -----------------------------------------------------------------

def message_batches(run_ids: list[int], *, most: int | None = None, spread: int | None = None) -> list[list[int]]:
    """Split run ids sent together into messages: one run per message up to ``spread``
    runs, so that a small burst is taken by that many workers at once; beyond that, as
    few messages as keep each at most ``most`` runs (JUNCTION_RUN_BATCH_MAX), evenly
    filled and in order. A message costs the worker's parent process more than a trivial
    run costs its child, so a large burst in batches runs several times faster."""
    most = max(1, settings.JUNCTION_RUN_BATCH_MAX if most is None else most)
    spread = max(1, settings.JUNCTION_RUN_BATCH_SPREAD if spread is None else spread)
    total = len(run_ids)
    if not total:
        return []
    count = max(-(-total // most), min(total, spread))
    size, longer = divmod(total, count)
    batches, start = [], 0
    for index in range(count):
        end = start + size + (index < longer)
        batches.append(list(run_ids[start:end]))
        start = end
    return batches


def publish_runs(run_ids: list[int], *, countdown: float | None = None, spread: int | None = None) -> None:
    """Send the runs over one broker connection, batched by ``message_batches`` (``spread``
    passed on): a batch of one is a ``run_handler_task`` message, a longer one a
    ``run_batch_task``."""
    if not run_ids:
        return
    from .tasks import run_batch_task, run_handler_task

    def send(batch: list[int], **options) -> None:
        if len(batch) == 1:
            run_handler_task.apply_async((batch[0],), countdown=countdown, **options)
        else:
            run_batch_task.apply_async((batch,), countdown=countdown, **options)

    batches = message_batches(list(run_ids), spread=spread)
    app = run_handler_task.app
    if app.conf.task_always_eager:
        for batch in batches:
            send(batch)
        return
    with app.producer_or_acquire() as producer:
        for batch in batches:
            send(batch, producer=producer)


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
    from .schedules import iso

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


# --- Picking up a run in a worker ------------------------------------------------------

def process_run(run_id: int, *, redelivered: bool = False) -> str:
    """What ``run_handler_task`` does: claim, execute, follow up. ``redelivered`` is the
    broker's flag: the message was given back by a worker that died (or timed out).
    Returns what happened ("executed", "finished", "duplicate", "refused", "lost",
    "gone") for logs and tests."""
    from .execution import claim_and_load, execute_run

    run = None
    if connection.vendor == "postgresql":
        # The common pickup in one statement; anything else takes claim_run's other branches.
        run = claim_and_load(run_id)
        outcome = "execute" if run is not None else claim_run(run_id, redelivered=redelivered, tried=True)
    else:
        outcome = claim_run(run_id, redelivered=redelivered)
    if outcome == "execute":
        run = execute_run(run_id, claimed=True, run=run)
        follow_up(run)
        return "executed"
    if outcome == "finished":
        # Delivered again after its outcome was recorded: only the (idempotent) follow-ups.
        follow_up(HandlerRun.objects.get(pk=run_id))
    return outcome


def redelivery_order(run_ids: list[int]) -> tuple[list[int], int | None]:
    """A redelivered batch: (its runs in the order to run them, the run its dead worker was
    running or None).

    A batch runs in order, so the run its worker was running is the first one not finished,
    if that one is ``running``; it goes last, so that a run that kills its worker holds up
    the others of its batch once at most. Any other ``running`` run of the batch was sent
    on to another message (the batch ran out of time) and may be running there now: it is
    not taken for lost."""
    statuses = dict(HandlerRun.objects.filter(pk__in=run_ids).values_list("pk", "status"))
    pending = [run_id for run_id in run_ids if statuses.get(run_id) not in FINISHED]
    crashed = pending[0] if pending and statuses.get(pending[0]) == RunStatus.RUNNING else None
    return [run_id for run_id in run_ids if run_id != crashed] + ([crashed] if crashed else []), crashed


def claim_run(run_id: int, *, redelivered: bool = False, tried: bool = False) -> str:
    """Take the run for this pickup. The common case is one UPDATE moving it from queued
    to running, so two messages for one run never both execute it; the same UPDATE stamps
    ``started_at`` and counts the pickup in ``starts`` (``F("starts") + 1``). Whenever
    "execute" is returned the pickup has been stamped and counted, so the caller runs it
    with ``execute_run(run_id, claimed=True)``.

    A run already ``running`` was picked up before. If this message was redelivered (or
    the run started longer ago than the hard time limit), that worker died: run it again,
    unless it has been picked up JUNCTION_RUN_MAX_STARTS times (then ``worker_lost``).
    Otherwise another worker is running it now and this message is a duplicate.

    ``tried=True``: the caller already ran that UPDATE (``execution.claim_and_load``, the
    same statement on PostgreSQL) and it claimed nothing; only the other branches are left."""
    # No join in the UPDATE: the status test must sit in its own WHERE, so that of two
    # concurrent pickups the second re-checks it after the first commits (PostgreSQL).
    enabled = Instance.objects.filter(enabled=True).values("pk")
    if not tried and HandlerRun.objects.filter(pk=run_id, status=RunStatus.QUEUED, instance_id__in=enabled).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), starts=F("starts") + 1
    ):
        return "execute"
    with transaction.atomic():
        run = HandlerRun.objects.select_for_update(of=("self",)).select_related("instance").filter(pk=run_id).first()
        if run is None:
            return "gone"
        if run.status in FINISHED:
            return "finished"
        if run.status == RunStatus.RUNNING:
            limit = timezone.now() - timedelta(seconds=settings.JUNCTION_RUN_TIME_LIMIT)
            if not (redelivered or (run.started_at and run.started_at < limit)):
                return "duplicate"
        if not run.instance.enabled:
            _record_failure(run, "instance_disabled", "the instance is disabled: its handlers do not run")
            return "refused"
        if run.status == RunStatus.RUNNING:
            if run.starts >= settings.JUNCTION_RUN_MAX_STARTS:
                _record_failure(
                    run, "worker_lost",
                    f"the run stopped its worker {run.starts} times (time limit, memory or crash); not retried",
                )
                return "lost"
            log.warning("run %s was picked up before by a worker that died; running it again", run_id)
        # Stamped and counted while the row is locked, like the UPDATE above.
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.starts += 1
        run.save(update_fields=["status", "started_at", "starts"])
        return "execute"


def fail_run(run_id: int, code: str, message: str) -> None:
    """Record a run as failed from outside the sandbox (time limit, lost worker)."""
    with transaction.atomic():
        run = HandlerRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None and run.status not in FINISHED:
            _record_failure(run, code, message)


def _record_failure(run: HandlerRun, code: str, message: str) -> None:
    now = timezone.now()
    run.status = RunStatus.FAILED
    run.error_code, run.error_message = code, message
    run.finished_at = now
    if run.started_at:
        run.duration_ms = max(0, int((now - run.started_at).total_seconds() * 1000))
    run.save(update_fields=["status", "error_code", "error_message", "finished_at", "duration_ms"])


# --- After a run ---------------------------------------------------------------------------

def follow_up(run: HandlerRun) -> None:
    """Retry a failed timer/event run if its handler says so; post a polling timer's new
    items. Both are idempotent, so a redelivered message cannot double them. Most runs
    need neither and cost no query here (nor does a failed run whose handler declares no
    retry, when its version was loaded with it, as ``execute_run`` does)."""
    if run.status == RunStatus.FAILED and run.trigger in RETRIED_TRIGGERS and run.error_code != "worker_lost":
        spec = _loaded_handler_spec(run)
        if spec is None or run.attempt < retry_policy(spec)[0]:
            schedule_retry(run)
    elif run.status == RunStatus.SUCCEEDED and isinstance(run.result, dict) and "items" in run.result:
        from .events import post_polled_items

        post_polled_items(run)


def _loaded_handler_spec(run: HandlerRun) -> dict | None:
    """``handler_spec(run)`` if the run's instance, version and manifest are already loaded
    (no query); None otherwise."""
    if not HandlerRun.instance.is_cached(run):
        return None
    instance = run.instance
    if not Instance.version.is_cached(instance) or "manifest" in instance.version.get_deferred_fields():
        return None
    return handler_spec(run)


def handler_spec(run: HandlerRun) -> dict:
    spec = run.instance.version.handlers.get(run.handler)
    return spec if isinstance(spec, dict) else {}


def retry_policy(spec: dict) -> tuple[int, float]:
    """``retry: {attempts, backoff}`` → (total attempts including the first, first delay).
    Missing or malformed values mean no retry; both are capped by settings."""
    retry = spec.get("retry")
    if not isinstance(retry, dict):
        return 1, 0.0
    attempts, backoff = retry.get("attempts", 1), retry.get("backoff", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        attempts = 1
    if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
        backoff = 0
    return max(1, min(attempts, settings.JUNCTION_RETRY_MAX_ATTEMPTS)), float(backoff)


def retry_delay(*, backoff: float, attempt: int) -> float:
    """Seconds before the attempt after failed attempt ``attempt``: backoff, doubling."""
    return min(backoff * 2 ** (attempt - 1), settings.JUNCTION_RETRY_MAX_DELAY_SECONDS)


def schedule_retry(run: HandlerRun) -> HandlerRun | None:
    """Queue the next attempt of a failed run after ``backoff * 2**(attempt-1)`` seconds.
    ``attempts`` counts the first run: ``attempts: 3`` means up to two retries."""
    run = HandlerRun.objects.select_related("instance__version").get(pk=run.pk)
    attempts, backoff = retry_policy(handler_spec(run))
    if run.attempt >= attempts or not run.instance.enabled:
        return None
    first_id = run.first_run_id or run.pk
    delay = retry_delay(backoff=backoff, attempt=run.attempt)
    retry = HandlerRun(
        instance=run.instance, handler=run.handler, trigger=Trigger.RETRY, input=run.input,
        first_run_id=first_id, attempt=run.attempt + 1, idempotency_key=f"retry:{first_id}:{run.attempt + 1}",
    )
    try:
        with transaction.atomic():
            enqueue_runs([retry], countdown=delay or None)
    except IntegrityError:
        return None  # this attempt is already queued
    retry.countdown = delay  # for callers and tests: the message was sent with it
    log.info("run %s failed (%s); attempt %d in %.0f s", run.pk, run.error_code, retry.attempt, delay)
    return retry


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


def stopped_by_time_limit(run_ids: list[int], *, seconds: float) -> HandlerRun | None:
    """The task running ``run_ids`` was killed by its hard time limit (the worker's main
    process calls this; the message is acked, not redelivered). The run it was running, the
    last one of them started, is recorded as failed (``timeout``) and followed up like any
    failed run; those it had not reached are sent again. Returns the run recorded."""
    stuck = (
        HandlerRun.objects.filter(pk__in=run_ids, status=RunStatus.RUNNING)
        .order_by("-started_at").values_list("pk", flat=True).first()
    )
    if stuck is not None:
        fail_run(stuck, "timeout", (
            f"the run was stopped by the worker's hard time limit ({seconds:g} s): it was stuck "
            "where the sandbox could not interrupt it"
        ))
    queued = set(HandlerRun.objects.filter(pk__in=run_ids, status=RunStatus.QUEUED).values_list("pk", flat=True))
    publish_runs([run_id for run_id in run_ids if run_id in queued])
    if stuck is None:
        return None
    run = HandlerRun.objects.get(pk=stuck)
    if run.error_code == "timeout":
        follow_up(run)
    return run
