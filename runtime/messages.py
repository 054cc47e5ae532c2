"""Sending queued runs to the ``handlers`` queue: the first step after a run's row commits.

A message carries only run ids. Runs sent together are batched (``message_batches``) and
sent over one broker connection; the tasks are named, not imported (``runtime.tasks``
imports the worker, which creates runs: sending by name keeps the imports running one
way, docs/running.md).
"""
from __future__ import annotations

from django.conf import settings

from marketplace.celery import app

RUN_TASK = "runtime.tasks.run_handler_task"
BATCH_TASK = "runtime.tasks.run_batch_task"


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


def _message(batch: list[int]) -> tuple[str, tuple]:
    """A batch of one is a ``run_handler_task`` message, a longer one a ``run_batch_task``."""
    return (RUN_TASK, (batch[0],)) if len(batch) == 1 else (BATCH_TASK, (batch,))


def publish_runs(run_ids: list[int], *, countdown: float | None = None, spread: int | None = None) -> None:
    """Send the runs over one broker connection, batched by ``message_batches`` (``spread``
    passed on). Routed by name (CELERY_TASK_ROUTES); with ``task_always_eager`` (tests) run
    here and now."""
    if not run_ids:
        return
    batches = message_batches(list(run_ids), spread=spread)
    if app.conf.task_always_eager:
        # send_task ignores task_always_eager: look the task up by name, as a worker does.
        app.loader.import_default_modules()
        for batch in batches:
            name, args = _message(batch)
            app.tasks[name].apply_async(args, countdown=countdown)
        return
    with app.producer_or_acquire() as producer:
        for batch in batches:
            name, args = _message(batch)
            app.send_task(name, args, countdown=countdown, producer=producer)
