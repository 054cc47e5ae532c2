"""Pruning the run history (runtime/retention.py): exactly the finished runs older than
JUNCTION_RUN_RETENTION_DAYS go, a batch per transaction, chains of retries and replays as a
whole; everything else stays. Runs on SQLite and on PostgreSQL (the second pass of .ci/run)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from runtime.retention import prune_runs

from .. import factories
from .helpers import install

pytestmark = pytest.mark.django_db

TABLE = HandlerRun._meta.db_table


@pytest.fixture
def retention(settings):
    settings.JUNCTION_RUN_RETENTION_DAYS = 30
    settings.JUNCTION_RUN_PRUNE_BATCH = 2
    settings.JUNCTION_RUN_PRUNE_PAUSE_MS = 0
    settings.JUNCTION_RUN_PRUNE_MAX_SECONDS = 60
    return settings


def make(instance, *, days: float, status=RunStatus.SUCCEEDED, **fields) -> HandlerRun:
    run = factories.make_run(instance, status=status, **fields)
    HandlerRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=days))
    return run


def deletes_of_batches(queries) -> int:
    return sum(1 for q in queries.captured_queries
               if q["sql"].startswith("DELETE") and f"{TABLE}" in q["sql"] and " id IN (" in q["sql"].replace('"', ""))


def remaining() -> set[int]:
    return set(HandlerRun.objects.values_list("pk", flat=True))


def test_prune_deletes_exactly_the_finished_runs_older_than_retention_in_batches(retention):
    instance, other = install(), install()
    old = [make(instance, days=31), make(instance, days=45, status=RunStatus.FAILED), make(other, days=31),
           make(instance, days=400), make(other, days=30.01)]
    kept = [
        make(instance, days=29.99),  # just within retention
        make(instance, days=1),
        make(instance, days=40, status=RunStatus.QUEUED),  # not finished: housekeeping re-sends it
        make(other, days=40, status=RunStatus.RUNNING, started_at=timezone.now()),
    ]

    with CaptureQueriesContext(connection) as queries:
        assert prune_runs() == 5
    assert remaining() == {run.pk for run in kept}
    assert not remaining() & {run.pk for run in old}
    assert deletes_of_batches(queries) == 3  # 2 + 2 + 1, each in its own transaction
    assert prune_runs() == 0


def test_a_chain_goes_as_a_whole_once_all_of_it_is_old(retention):
    instance = install()
    # Old first run whose replay is recent: both stay (deleting it would cascade to the replay).
    first = make(instance, days=60, status=RunStatus.FAILED, trigger=Trigger.TIMER)
    recent_replay = make(instance, days=1, first_run=first, attempt=2, trigger=Trigger.REPLAY)
    # Old first run whose retry is old but still queued: both stay.
    waiting = make(instance, days=60, status=RunStatus.FAILED, trigger=Trigger.TIMER)
    queued_retry = make(instance, days=35, status=RunStatus.QUEUED, first_run=waiting, attempt=2,
                        trigger=Trigger.RETRY)
    # Old chain, all finished: all of it goes, counted once each.
    gone = make(instance, days=50, status=RunStatus.FAILED, trigger=Trigger.TIMER)
    make(instance, days=50, first_run=gone, attempt=2, trigger=Trigger.RETRY)
    make(instance, days=45, first_run=gone, attempt=3, trigger=Trigger.REPLAY)
    # An old attempt whose first run stays (another attempt is recent): the attempt goes.
    old_attempt = make(instance, days=40, first_run=first, attempt=3, trigger=Trigger.REPLAY)

    assert prune_runs() == 4
    assert remaining() == {first.pk, recent_replay.pk, waiting.pk, queued_retry.pk}
    assert not HandlerRun.objects.filter(pk=old_attempt.pk).exists()


def test_prune_stops_after_its_time_budget_and_the_next_one_goes_on(retention):
    instance = install()
    runs = [make(instance, days=31 + i) for i in range(5)]

    assert prune_runs(max_seconds=0) == 2  # one batch, then out of time
    assert prune_runs(max_seconds=0) == 2
    assert prune_runs() == 1
    assert not HandlerRun.objects.filter(pk__in=[run.pk for run in runs]).exists()
