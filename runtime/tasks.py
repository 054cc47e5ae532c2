"""Celery tasks of the runtime: thin, taking ids. The work is in ``runtime.runs``,
``runtime.dispatcher`` and ``runtime.events``.

``run_handler_task`` (one run) and ``run_batch_task`` (several, see ``runs.publish_runs``)
go to the ``handlers`` queue (CELERY_TASK_ROUTES) so untrusted runs never delay the
dispatcher tick; their time limits sit above the sandbox's own maximum and far below the
broker's visibility timeout (settings, "Runtime" block).

A run stuck where neither the sandbox's hook nor the soft limit reach it (a loop inside a C
function) is stopped by the pool process's watchdog at its own limit plus a margin
(``runtime.watchdog``: the run is recorded, the process killed, the message redelivered);
should that fail, by the hard limit, which kills the pool child: the worker's main
process then records the run as ``timeout`` and sends on the runs its message had not
reached (``RunTask.on_failure``). Runs whose worker vanished altogether are found by the
dispatcher tick (``runs.fail_stale_runs``), not only by the hourly housekeeping.
"""
from __future__ import annotations

import logging
import time

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_process_init
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections

from . import callbacks, dispatcher, retention, runs, watchdog
from .limits import setting

log = logging.getLogger(__name__)


class RunTask(Task):
    """Base of the run tasks. Celery calls ``on_failure`` in the worker's main process when
    the hard time limit killed the pool child running the task (and acks the message):
    that is where the stuck run gets its outcome, at once."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if not isinstance(exc, TimeLimitExceeded) or not args:
            return
        run_ids = args[0] if isinstance(args[0], list) else [args[0]]
        limit = exc.args[0] if exc.args and isinstance(exc.args[0], (int, float)) else settings.JUNCTION_RUN_TIME_LIMIT
        try:
            runs.stopped_by_time_limit(run_ids, seconds=limit)
        except Exception:  # the reaper in the dispatcher tick records the run later
            log.exception("could not record runs %s stopped by the hard time limit", run_ids)


@shared_task(bind=True, base=RunTask, name="runtime.tasks.run_handler_task", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=5)
def run_handler_task(self, run_id: int) -> str:
    """Execute queued HandlerRun ``run_id`` and do what follows it (retry, polled items).
    Retried (by Celery, not as a new run) only when the database connection fails."""
    try:
        return _process(run_id, redelivered=_redelivered(self))
    except SoftTimeLimitExceeded:
        return "time_limit"
    except (InterfaceError, OperationalError) as exc:
        raise _retry(self, exc, (run_id,)) from exc


@shared_task(bind=True, base=RunTask, name="runtime.tasks.run_batch_task", acks_late=True,
             reject_on_worker_lost=True, ignore_result=True, max_retries=5)
def run_batch_task(self, run_ids: list[int]) -> list[str]:
    """Execute several queued runs one after another, each exactly as ``run_handler_task``
    would (``runs.publish_runs`` batches a burst: a message costs more than a short run).

    A batch starts runs for ``batch_seconds`` at most and sends the runs it did not reach
    on in new messages: slow runs gain nothing from sharing a message and must not hold up
    the others while other workers are free, and the task's time limits stay above any one
    run's (a run is only started while the batch has time left for the longest run a
    handler may take).

    A worker that dies mid-batch gives the message back: runs already finished are not run
    again, and the run it was running goes last (``runs.redelivery_order``); it is the only
    one taken for lost."""
    crashed = None
    run_ids = list(run_ids)
    if _redelivered(self):
        run_ids, crashed = runs.redelivery_order(run_ids)
    deadline = time.monotonic() + batch_seconds()
    outcomes = []
    for position, run_id in enumerate(run_ids):
        if position and time.monotonic() > deadline:
            runs.publish_runs(run_ids[position:])
            break
        try:
            outcomes.append(_process(run_id, redelivered=run_id == crashed))
        except SoftTimeLimitExceeded:  # _process recorded the run; the limit ends the batch
            outcomes.append("time_limit")
            runs.publish_runs(run_ids[position + 1:])
            break
        except (InterfaceError, OperationalError) as exc:
            raise _retry(self, exc, (run_ids[position:],)) from exc
    return outcomes


BATCH_MARGIN_SECONDS = 5


def batch_seconds() -> float:
    """How long a batch may go on starting runs: JUNCTION_RUN_BATCH_SECONDS, and never
    longer than its soft time limit less the longest a run may take
    (JUNCTION_RUNTIME_MAX_TIMEOUT_MS) and a margin for recording it."""
    longest = setting("JUNCTION_RUNTIME_MAX_TIMEOUT_MS") / 1000
    within_limit = settings.JUNCTION_RUN_SOFT_TIME_LIMIT - longest - BATCH_MARGIN_SECONDS
    return max(0.0, min(settings.JUNCTION_RUN_BATCH_SECONDS, within_limit))


def _process(run_id: int, *, redelivered: bool) -> str:
    try:
        with watchdog.on_duty():
            return runs.process_run(run_id, redelivered=redelivered)
    except SoftTimeLimitExceeded:
        runs.fail_run(run_id, "time_limit", "the run exceeded the worker's time limit")
        raise


@worker_process_init.connect
def _start_watchdog(**kwargs) -> None:
    """Each prefork pool process watches its runs: one stuck past its own limit plus
    JUNCTION_RUNTIME_KILL_MARGIN_MS is recorded as ``timeout`` and the process killed
    (``runtime.watchdog``), long before the hard time limit would. Not in solo or thread
    pools, where killing the process would take the whole worker down."""
    if settings.JUNCTION_RUN_WATCHDOG:
        watchdog.install()


def _redelivered(task) -> bool:
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _retry(task, exc: Exception, args: tuple):
    # Connections are kept across tasks (CELERY_DB_REUSE_MAX): drop a broken one so the
    # retry reconnects. A run found "running" then counts as a lost pickup.
    for connection in connections.all(initialized_only=True):
        connection.close()
    return task.retry(args=args, exc=exc, countdown=2)


_last_reap = float("-inf")


@shared_task(name="runtime.tasks.dispatch_timers", ignore_result=True)
def dispatch_timers() -> int:
    """The beat tick: enqueue a run for every timer that is due; every
    JUNCTION_RUN_REAP_EVERY_SECONDS (per worker process) also record the runs whose worker
    was lost (``runs.fail_stale_runs``)."""
    global _last_reap
    enqueued = dispatcher.dispatch_due().enqueued
    if time.monotonic() - _last_reap >= settings.JUNCTION_RUN_REAP_EVERY_SECONDS:
        _last_reap = time.monotonic()
        runs.fail_stale_runs()
    return enqueued


@shared_task(name="runtime.tasks.housekeeping", ignore_result=True)
def housekeeping() -> dict:
    """Prune old runs, purge expired cache entries, fail runs whose worker vanished,
    re-send queued runs whose message was lost, delete stored files no row refers to,
    finish installs, upgrades and uninstalls whose process died mid-way, delete callback
    tokens a day past their expiry."""
    from django.utils import timezone

    from marketplace.models import CacheEntry
    from marketplace.services.installs import settle_stalled_instances
    from marketplace.services.media import sweep_orphan_files

    done = {
        "runs_pruned": retention.prune_runs(),
        "cache_purged": CacheEntry.objects.filter(expires_at__lt=timezone.now()).delete()[0],
        "stale_failed": runs.fail_stale_runs(),
        "requeued": runs.requeue_stranded_runs(),
        "orphan_files_removed": len(sweep_orphan_files()),
        "stalled_instances_settled": settle_stalled_instances(),
        "callback_tokens_pruned": callbacks.prune(),
    }
    log.info("housekeeping: %s", done)
    return done
