"""Runs sent together travel in batches: how a burst is split into messages, and
run_batch_task running each run as run_handler_task would (called in-process, or eagerly;
a real worker taking a batch, and dying in one, is in test_celery_e2e)."""
from __future__ import annotations

import pytest
from celery.signals import task_prerun
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from runtime import messages, worker
from runtime.tasks import batch_seconds, run_batch_task

from .helpers import install

pytestmark = pytest.mark.django_db

EVENT_LUA = """
function handle(ctx, input) return { n = input.payload.n } end
"""


@pytest.mark.parametrize(("total", "most", "spread", "sizes"), [
    (0, 16, 8, []),
    (1, 16, 8, [1]),
    (5, 16, 8, [1] * 5),  # a small burst: one run per message, taken by as many workers
    (8, 16, 8, [1] * 8),
    (9, 16, 8, [2] + [1] * 7),
    (40, 16, 8, [5] * 8),
    (200, 16, 8, [16] * 5 + [15] * 8),  # as few messages as keep each at most 16
    (7, 16, 1, [7]),
    (7, 1, 1, [1] * 7),
])
def test_a_burst_is_split_into_even_batches_in_order(total, most, spread, sizes):
    ids = list(range(100, 100 + total))
    batches = messages.message_batches(ids, most=most, spread=spread)
    assert [len(batch) for batch in batches] == sizes
    assert [run_id for batch in batches for run_id in batch] == ids


@pytest.fixture
def sent():
    """Tasks sent run in this process; yields the (task name, args) of each message."""
    from marketplace.celery import app

    messages = []

    def record(sender=None, args=None, **_):
        messages.append((sender.name, tuple(args)))

    task_prerun.connect(record, weak=False)
    app.conf.task_always_eager = True
    yield messages
    app.conf.task_always_eager = False
    task_prerun.disconnect(record)


def event_instance():
    handlers = {"onEvent": {"type": "event", "event": "bench", "file": "main.lua", "function": "handle"}}
    return install(handlers, {"main.lua": EVENT_LUA})


def queued(instance, count: int) -> list[int]:
    rows = HandlerRun.objects.bulk_create([
        HandlerRun(instance=instance, handler="onEvent", trigger=Trigger.EVENT, input={"payload": {"n": n}})
        for n in range(count)
    ])
    return [row.pk for row in rows]


def test_a_large_burst_goes_in_batch_messages_and_every_run_is_recorded(sent, settings):
    settings.JUNCTION_RUN_BATCH_MAX, settings.JUNCTION_RUN_BATCH_SPREAD = 16, 4
    instance = event_instance()
    ids = queued(instance, 40)
    messages.publish_runs(ids)
    assert [name for name, _ in sent] == ["runtime.tasks.run_batch_task"] * 4
    assert [run_id for _, (batch,) in sent for run_id in batch] == ids
    done = HandlerRun.objects.filter(pk__in=ids)
    assert sorted(done.values_list("result__n", flat=True)) == list(range(40))
    assert set(done.values_list("status", "starts")) == {(RunStatus.SUCCEEDED, 1)}


def test_a_small_burst_goes_one_run_per_message(sent, settings):
    settings.JUNCTION_RUN_BATCH_SPREAD = 8
    ids = queued(event_instance(), 3)
    messages.publish_runs(ids)
    assert sent == [("runtime.tasks.run_handler_task", (run_id,)) for run_id in ids]


def test_a_batch_runs_each_run_as_a_single_message_would():
    instance = event_instance()
    ids = queued(instance, 3)
    HandlerRun.objects.filter(pk=ids[0]).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    assert run_batch_task([*ids, 987654]) == ["finished", "executed", "executed", "gone"]
    assert HandlerRun.objects.get(pk=ids[2]).result == {"n": 2}


def test_a_batch_out_of_time_sends_the_runs_it_did_not_reach_on(sent, settings):
    # The soft limit leaves no time beyond one longest run: each message runs one run.
    settings.JUNCTION_RUN_SOFT_TIME_LIMIT = settings.JUNCTION_RUNTIME_MAX_TIMEOUT_MS / 1000 + 1
    assert batch_seconds() == 0
    settings.JUNCTION_RUN_BATCH_SPREAD = 1
    ids = queued(event_instance(), 3)
    assert run_batch_task(ids) == ["executed"]
    # The other two went on in a new message (and, eagerly, ran at once).
    assert sent[0] == ("runtime.tasks.run_batch_task", (ids[1:],))
    assert set(HandlerRun.objects.filter(pk__in=ids).values_list("status", "starts")) == {(RunStatus.SUCCEEDED, 1)}


def test_a_redelivered_batch_runs_the_run_its_dead_worker_was_running_last():
    instance = event_instance()
    done, crashed, waiting = queued(instance, 3)
    HandlerRun.objects.filter(pk=done).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    HandlerRun.objects.filter(pk=crashed).update(status=RunStatus.RUNNING, starts=1, started_at=timezone.now())
    run_batch_task.push_request(delivery_info={"redelivered": True})
    try:
        outcomes = run_batch_task.run([done, crashed, waiting])
    finally:
        run_batch_task.pop_request()
    assert outcomes == ["finished", "executed", "executed"]  # done, waiting, then crashed
    crashed_run, waiting_run = HandlerRun.objects.get(pk=crashed), HandlerRun.objects.get(pk=waiting)
    assert (crashed_run.status, crashed_run.starts) == (RunStatus.SUCCEEDED, 2)
    assert waiting_run.finished_at <= crashed_run.started_at


def test_a_batch_of_slow_runs_sends_the_rest_on_after_its_time(sent, settings):
    settings.JUNCTION_RUN_BATCH_SECONDS = 0  # every run counts as slow
    settings.JUNCTION_RUN_BATCH_SPREAD = 8
    assert batch_seconds() == 0
    ids = queued(event_instance(), 4)
    assert run_batch_task(ids) == ["executed"]
    # The rest went on spread over messages of their own, for free workers to take.
    assert sent == [("runtime.tasks.run_handler_task", (run_id,)) for run_id in ids[1:]]
    assert set(HandlerRun.objects.filter(pk__in=ids).values_list("status", "starts")) == {(RunStatus.SUCCEEDED, 1)}


def test_a_redelivered_batch_takes_only_the_run_it_was_on_for_lost():
    """Runs a batch sent on before its worker died may be running in another worker: a
    redelivery of the batch must not run them a second time."""
    instance = event_instance()
    done, crashed, sent_on, waiting = queued(instance, 4)
    HandlerRun.objects.filter(pk=done).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    HandlerRun.objects.filter(pk__in=[crashed, sent_on]).update(
        status=RunStatus.RUNNING, starts=1, started_at=timezone.now()
    )
    assert worker.redelivery_order([done, crashed, sent_on, waiting]) == ([done, sent_on, waiting, crashed], crashed)
    run_batch_task.push_request(delivery_info={"redelivered": True})
    try:
        outcomes = run_batch_task.run([done, crashed, sent_on, waiting])
    finally:
        run_batch_task.pop_request()
    assert outcomes == ["finished", "duplicate", "executed", "executed"]
    assert HandlerRun.objects.get(pk=sent_on).starts == 1  # left to the worker running it
    assert HandlerRun.objects.get(pk=crashed).starts == 2
