"""How long run history is kept: housekeeping deletes finished runs older than
JUNCTION_RUN_RETENTION_DAYS.

At 500 runs a second that is 1.8 million rows an hour, so the delete must not be one
statement: one transaction over millions of rows holds their row locks and the database's
vacuum horizon for minutes and writes its WAL in one burst. Instead ``prune_runs`` walks
the old runs oldest first, deletes JUNCTION_RUN_PRUNE_BATCH of them per short transaction,
pauses JUNCTION_RUN_PRUNE_PAUSE_MS between transactions so workers and autovacuum keep
their share of the disk, and stops after JUNCTION_RUN_PRUNE_MAX_SECONDS (the next
housekeeping goes on where it stopped). The figures behind the defaults are in docs/operations.md
(``bench/bench_history.py``).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from marketplace.choices import RunStatus
from marketplace.models import HandlerRun

log = logging.getLogger(__name__)

FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED)


def old_runs(cutoff: datetime):
    """Finished runs created before ``cutoff``: what may be pruned, once ``kept_chains``
    has taken out the first runs whose chain is not all old."""
    return HandlerRun.objects.filter(created_at__lt=cutoff, status__in=FINISHED)


def kept_chains(ids: list[int], cutoff: datetime) -> set[int]:
    """Those of ``ids`` that have a retry or replay (``attempts``) created since ``cutoff``
    or not finished: deleting a first run cascades to its attempts, so a chain goes only
    as a whole. One probe of the (small, partial) first-run index per id; as a NOT EXISTS
    in the batch query PostgreSQL chose a merge join over that whole index instead."""
    if not ids:
        return set()
    recent = HandlerRun.objects.filter(first_run_id__in=ids).filter(Q(created_at__gte=cutoff) | ~Q(status__in=FINISHED))
    return set(recent.values_list("first_run_id", flat=True))


def delete_runs(ids: list[int], cutoff: datetime) -> int:
    """Delete these old runs (from ``old_runs`` less ``kept_chains``) and their attempts,
    in two statements (per chunk of the database's parameter limit). Django's ``delete()``
    would load every row to follow the ``first_run`` cascade and then delete 100 ids per
    statement (docs/operations.md). An attempt is deleted only if it is old and finished
    too: one created since ``kept_chains`` looked (a replay of an old run) stays, and the
    foreign key then refuses the transaction at commit (IntegrityError) rather than
    deleting it."""
    if not ids:
        return 0
    table = connection.ops.quote_name(HandlerRun._meta.db_table)
    size = (connection.features.max_query_params or len(ids) + 3) - 3
    deleted = 0
    with connection.cursor() as cursor:
        for start in range(0, len(ids), size):
            chunk = ids[start:start + size]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"DELETE FROM {table} WHERE first_run_id IN ({marks}) AND created_at < %s AND status IN (%s, %s)",
                [*chunk, cutoff, *FINISHED],
            )
            deleted += cursor.rowcount
            cursor.execute(f"DELETE FROM {table} WHERE id IN ({marks})", chunk)
            deleted += cursor.rowcount
    return deleted


def prune_runs(*, now: datetime | None = None, batch: int | None = None, pause_ms: int | None = None,
               max_seconds: float | None = None) -> int:
    """Delete the finished runs older than JUNCTION_RUN_RETENTION_DAYS (``old_runs``, but
    not a chain with a recent or unfinished attempt: ``kept_chains``), oldest first,
    ``batch`` per transaction, sleeping ``pause_ms`` between transactions, for
    ``max_seconds`` at most (each defaults to its JUNCTION_RUN_PRUNE_* setting). Returns how many runs were deleted
    (attempts deleted with their first run included).

    No row is locked before its DELETE (locking writes every row a second time: twice
    the WAL); a replay created meanwhile makes its batch fail at commit, and the batch is
    left for the next pass (``delete_runs``)."""
    now = now or timezone.now()
    batch = batch or settings.JUNCTION_RUN_PRUNE_BATCH
    pause = (settings.JUNCTION_RUN_PRUNE_PAUSE_MS if pause_ms is None else pause_ms) / 1000
    max_seconds = settings.JUNCTION_RUN_PRUNE_MAX_SECONDS if max_seconds is None else max_seconds
    cutoff = now - timedelta(days=settings.JUNCTION_RUN_RETENTION_DAYS)
    # Oldest first through handlerrun_age_idx, each batch starting where the last one ended
    # (created_at, then id for ties), so no batch walks over the index entries of the rows
    # deleted before it, nor over the recent part of the table.
    candidates = old_runs(cutoff).order_by("created_at", "pk")
    deadline = time.monotonic() + max_seconds
    total, last, batches = 0, None, 0
    while True:
        page = candidates
        if last is not None:
            page = page.filter(created_at__gte=last[1]).filter(Q(created_at__gt=last[1]) | Q(pk__gt=last[0]))
        try:
            with transaction.atomic():
                rows = list(page.values_list("pk", "created_at")[:batch])
                ids = [pk for pk, _ in rows]
                kept = kept_chains(ids, cutoff)
                deleted = delete_runs([pk for pk in ids if pk not in kept], cutoff)
            total += deleted
        except IntegrityError:
            # A run of this batch was replayed meanwhile: the batch stays until the next pass.
            log.warning("pruning runs: a batch after run %s was refused (a new attempt); left for later", rows[0][0])
        batches += 1
        if len(rows) < batch:
            break
        last = rows[-1]
        if time.monotonic() >= deadline:
            log.warning("pruning runs stopped after %.0f s (%d deleted); the next housekeeping goes on",
                        max_seconds, total)
            break
        if pause:
            time.sleep(pause)
    if total:
        log.info("pruned %d runs older than %s in %d batches", total, cutoff.isoformat(timespec="seconds"), batches)
    return total
