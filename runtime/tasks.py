"""Celery tasks of the runtime: thin, taking ids. The work is in ``runtime.runs``,
``runtime.schedules`` and ``runtime.events``.

``run_handler_task`` goes to the ``handlers`` queue (CELERY_TASK_ROUTES) so untrusted runs
never delay the dispatcher tick; its time limits sit above the sandbox's own maximum and
far below the broker's visibility timeout (settings, "Runtime" block).
"""
from __future__ import annotations

import logging

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError, connections

from . import runs, schedules

log = logging.getLogger(__name__)


@shared_task(bind=True, name="runtime.tasks.run_handler_task", acks_late=True, reject_on_worker_lost=True,
             ignore_result=True, max_retries=5)
def run_handler_task(self, run_id: int) -> str:
    """Execute queued HandlerRun ``run_id`` and do what follows it (retry, polled items).
    Retried (by Celery, not as a new run) only when the database connection fails."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    try:
        return runs.process_run(run_id, redelivered=redelivered)
    except SoftTimeLimitExceeded:
        runs.fail_run(run_id, "time_limit", "the run exceeded the worker's time limit")
        return "time_limit"
    except (InterfaceError, OperationalError) as exc:
        # Connections are kept across tasks (CELERY_DB_REUSE_MAX): drop a broken one so
        # the retry reconnects. A run found "running" then counts as a lost pickup.
        for connection in connections.all(initialized_only=True):
            connection.close()
        raise self.retry(exc=exc, countdown=2)


@shared_task(name="runtime.tasks.dispatch_timers", ignore_result=True)
def dispatch_timers() -> int:
    """The beat tick: enqueue a run for every timer that is due."""
    return schedules.dispatch_due().enqueued


@shared_task(name="runtime.tasks.housekeeping", ignore_result=True)
def housekeeping() -> dict:
    """Prune old runs, purge expired cache entries, fail runs whose worker vanished,
    re-send queued runs whose message was lost."""
    from django.utils import timezone

    from marketplace.models import CacheEntry

    done = {
        "runs_pruned": runs.prune_runs(),
        "cache_purged": CacheEntry.objects.filter(expires_at__lt=timezone.now()).delete()[0],
        "stale_failed": runs.fail_stale_runs(),
        "requeued": runs.requeue_stranded_runs(),
    }
    log.info("housekeeping: %s", done)
    return done
