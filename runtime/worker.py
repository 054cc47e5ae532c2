"""A worker's side of a run: claim → execute → record → follow up (docs/running.md).

``process_run`` is what the ``handlers`` tasks (``runtime.tasks``) do for each run id
they are sent. It claims the run (``claim``, the one place a run goes from queued to
running), executes and records it (``runtime.execution``), then follows up: a failed
timer or event run is retried if its handler says so (a new queued run,
``runtime.runs``), and a polling timer's new items are posted as events
(``runtime.events``). ``run_now`` does the same for a caller that waits for the
outcome (RPC, lifecycle handlers), with the sandbox in a killable child process.

A worker claims the row before executing it, in the same statement stamping
``started_at`` and counting the pickup in ``starts``; a run found ``running`` at pickup
lost its worker (killed by the hard time limit, memory, a crash) and after
``JUNCTION_RUN_MAX_STARTS`` pickups it is recorded as failed (``worker_lost``) instead of
being redelivered forever.
"""
from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun, Instance

from . import postgres
from .events import post_polled_items
from .execution import execute
from .messages import publish_runs
from .runs import FINISHED, enqueue_runs

log = logging.getLogger(__name__)

# Runs of these triggers are retried when the handler declares ``retry``.
RETRIED_TRIGGERS = (Trigger.TIMER, Trigger.EVENT, Trigger.RETRY)


# --- Claiming ------------------------------------------------------------------------------

def claim(run_id: int, *, redelivered: bool = False, by_caller: bool = False) -> tuple[str, HandlerRun | None]:
    """Take the run for this pickup: (what to do, the run). Whenever the answer is
    "execute" the run is ``running``, its pickup stamped (``started_at``) and counted
    (``starts + 1``), and it comes loaded for ``execution.execute``; for "finished" it
    comes loaded too; otherwise it is None.

    The common case is one conditional UPDATE moving a queued run of an enabled instance to
    running (``postgres.claim_queued``; one statement with the load on PostgreSQL), so two
    messages for one run never both execute it. Otherwise, with the row locked:
    - gone → "gone"; finished → "finished" (a message delivered again after the outcome
      was recorded);
    - ``running``: picked up before. If this message was ``redelivered`` (or the run
      started longer ago than the hard time limit) that worker died: run it again, unless
      it has been picked up JUNCTION_RUN_MAX_STARTS times ("lost", recorded as
      ``worker_lost``). Otherwise another worker is running it now: "duplicate";
    - its instance disabled: "refused", recorded as ``instance_disabled``.

    ``by_caller``: the caller created the run and runs it itself (``run_now``): it is
    claimed whatever its instance's flag, and a ``running`` one is taken over."""
    run = postgres.claim_queued(run_id, enabled_only=not by_caller)
    if run is not None:
        return "execute", run
    with transaction.atomic():
        run = HandlerRun.objects.select_for_update(of=("self",)).select_related("instance").filter(pk=run_id).first()
        if run is None:
            return "gone", None
        if run.status in FINISHED:
            return "finished", postgres.load_run(run_id)
        if not by_caller:
            if run.status == RunStatus.RUNNING:
                limit = timezone.now() - timedelta(seconds=settings.JUNCTION_RUN_TIME_LIMIT)
                if not (redelivered or (run.started_at and run.started_at < limit)):
                    return "duplicate", None
            if not run.instance.enabled:
                _record_failure(run, "instance_disabled", "the instance is disabled: its handlers do not run")
                return "refused", None
            if run.status == RunStatus.RUNNING:
                if run.starts >= settings.JUNCTION_RUN_MAX_STARTS:
                    _record_failure(
                        run, "worker_lost",
                        f"the run stopped its worker {run.starts} times (time limit, memory or crash); not retried",
                    )
                    return "lost", None
                log.warning("run %s was picked up before by a worker that died; running it again", run_id)
        # Stamped and counted while the row is locked, like the UPDATE above.
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.starts += 1
        run.save(update_fields=["status", "started_at", "starts"])
    return "execute", postgres.load_run(run_id)


# --- Running -------------------------------------------------------------------------------

def process_run(run_id: int, *, redelivered: bool = False) -> str:
    """What ``run_handler_task`` does: claim, execute, follow up. ``redelivered`` is the
    broker's flag: the message was given back by a worker that died (or timed out).
    Returns what happened ("executed", "finished", "duplicate", "refused", "lost",
    "gone") for logs and tests."""
    outcome, run = claim(run_id, redelivered=redelivered)
    if outcome == "execute":
        follow_up(execute(run))
        return "executed"
    if outcome == "finished":
        # Delivered again after its outcome was recorded: only the (idempotent) follow-ups.
        follow_up(run)
    return outcome


def execute_run(run_id: int, *, isolated: bool = False) -> HandlerRun:
    """Claim (``by_caller``) and execute a run for a caller that runs it itself; a run
    already finished is returned untouched, so it never runs twice. No follow-up: the
    caller has the outcome. Raises HandlerRun.DoesNotExist for a run that is gone."""
    outcome, run = claim(run_id, by_caller=True)
    if outcome == "gone":
        raise HandlerRun.DoesNotExist(f"run #{run_id} does not exist")
    return run if outcome == "finished" else execute(run, isolated=isolated)


def run_now(*, instance: Instance, handler: str, input: Any, trigger: str) -> HandlerRun:
    """Create a run of ``handler`` for ``instance`` and execute it synchronously.

    Used for RPC calls and lifecycle handlers; returns the finished row (see
    ``execution.execute`` for what is recorded). RPC handlers get input/output validation.
    The caller (a web request, a command) is never held longer than the run's limit plus
    JUNCTION_RUNTIME_KILL_MARGIN_MS: the sandbox runs isolated (``runtime.isolation``) and a
    run stopped there is recorded as failed with ``timeout``.
    """
    run = HandlerRun.objects.create(
        instance=instance, handler=handler, trigger=trigger, input={} if input is None else input
    )
    return execute_run(run.pk, isolated=True)


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


# --- After a run: retries, polled items --------------------------------------------------

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
