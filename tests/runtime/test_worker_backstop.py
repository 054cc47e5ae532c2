"""The worker backstop: a run whose pool child was killed by the hard time limit is recorded
as ``timeout`` by the worker's main process (its batch goes on), and a run whose worker
vanished is recorded as ``worker_lost`` by the dispatcher tick, not an hour later.

The unit tests call what Celery calls; the end-to-end test starts a real worker on Redis +
PostgreSQL with a hard limit of a few seconds (see test_celery_e2e for the set-up)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from celery.exceptions import TimeLimitExceeded
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from runtime import tasks
from runtime.tasks import dispatch_timers, run_batch_task, run_handler_task

from .. import factories
from .helpers import install, make_runtime_version
from .test_celery_e2e import BASE_DIR, ON_PG_AND_REDIS, database_url, purge, wait_for

SPIN_LUA = """
function spin(ctx, input)
  while true do end
end
function fast(ctx, input) return { n = input.n } end
function flaky(ctx, input) error("nope") end
"""
LONG = {"timeoutMs": 60_000, "instructions": 1_000_000_000}
HANDLERS = {
    "spin": {"type": "event", "event": "spin", "file": "main.lua", "function": "spin", "limits": LONG},
    "fast": {"type": "event", "event": "fast", "file": "main.lua", "function": "fast"},
    "retried": {"type": "event", "event": "r", "file": "main.lua", "function": "spin", "limits": LONG,
                "retry": {"attempts": 2, "backoff": 30}},
}


@pytest.fixture
def eager():
    from marketplace.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def event_run(instance, handler: str, **fields) -> HandlerRun:
    return HandlerRun.objects.create(instance=instance, handler=handler, trigger=Trigger.EVENT,
                                     input=fields.pop("input", {}), **fields)


def hard_limit(task, run_ids) -> None:
    """What Celery's main process does when the hard limit killed the pool child."""
    task.on_failure(TimeLimitExceeded(80), "task-id", (run_ids,), {}, None)


@pytest.mark.django_db
def test_a_batch_killed_by_the_hard_limit_records_its_stuck_run_as_timeout_and_goes_on(eager):
    instance = install(HANDLERS, {"main.lua": SPIN_LUA}, name="stuck")
    done = event_run(instance, "fast", status=RunStatus.SUCCEEDED, input={"n": 0})
    stuck = event_run(instance, "spin", status=RunStatus.RUNNING, started_at=timezone.now(), starts=1)
    rest = [event_run(instance, "fast", input={"n": n}) for n in (1, 2)]

    hard_limit(run_batch_task, [done.pk, stuck.pk, *(run.pk for run in rest)])

    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code) == (RunStatus.FAILED, "timeout")
    assert "hard time limit (80 s)" in stuck.error_message and stuck.finished_at
    for run in rest:  # not reached by the killed task: sent again (eagerly: run at once)
        run.refresh_from_db()
        assert (run.status, run.result, run.starts) == (RunStatus.SUCCEEDED, {"n": run.input["n"]}, 1)
    done.refresh_from_db()
    assert done.starts == 0  # finished before: untouched


@pytest.mark.django_db
def test_a_single_run_killed_by_the_hard_limit_is_a_timeout_and_is_retried_like_one(eager):
    instance = install(HANDLERS, {"main.lua": SPIN_LUA}, name="retried")
    stuck = event_run(instance, "retried", status=RunStatus.RUNNING, started_at=timezone.now(), starts=1)

    hard_limit(run_handler_task, stuck.pk)

    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code) == (RunStatus.FAILED, "timeout")
    retry = HandlerRun.objects.get(first_run=stuck)
    assert (retry.trigger, retry.attempt, retry.status) == (Trigger.RETRY, 2, RunStatus.QUEUED)


@pytest.mark.django_db
def test_other_failures_are_left_to_celery():
    instance = install(HANDLERS, {"main.lua": SPIN_LUA}, name="other")
    running = event_run(instance, "spin", status=RunStatus.RUNNING, started_at=timezone.now(), starts=1)
    run_handler_task.on_failure(RuntimeError("boom"), "task-id", (running.pk,), {}, None)
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_the_dispatcher_tick_records_runs_whose_worker_vanished(settings, monkeypatch):
    settings.JUNCTION_RUN_TIME_LIMIT, settings.JUNCTION_RUN_REAP_MARGIN_SECONDS = 80, 20
    settings.JUNCTION_RUN_REAP_EVERY_SECONDS = 15
    monkeypatch.setattr(tasks, "_last_reap", float("-inf"))
    instance = install()
    now = timezone.now()
    lost = factories.make_run(instance, status=RunStatus.RUNNING, started_at=now - timedelta(seconds=101))
    busy = factories.make_run(instance, status=RunStatus.RUNNING, started_at=now - timedelta(seconds=99))

    dispatch_timers()

    lost.refresh_from_db()
    busy.refresh_from_db()
    assert (lost.status, lost.error_code) == (RunStatus.FAILED, "worker_lost")
    assert busy.status == RunStatus.RUNNING  # may still be within its hard limit
    # Not again before REAP_EVERY seconds (per worker process): the tick stays cheap.
    HandlerRun.objects.filter(pk=busy.pk).update(started_at=now - timedelta(seconds=200))
    dispatch_timers()
    busy.refresh_from_db()
    assert busy.status == RunStatus.RUNNING


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_reaper_query_uses_the_unfinished_runs_index():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's plan")
    stale = HandlerRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=timezone.now())
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table: ask what could serve it
        plan = stale.explain()
    assert "handlerrun_unfinished_idx" in plan


# --- end to end: a real worker whose pool child is killed by the hard limit ---------------

@pytest.fixture
def short_limit_worker(transactional_db, tmp_path):
    """A worker whose run tasks are killed after 3 s, with no soft limit (as for code stuck
    inside C, which the soft limit never reaches)."""
    from marketplace.celery import app

    purge(app)
    env = {**os.environ, "DATABASE_URL": database_url(), "JUNCTION_RUN_TIME_LIMIT": "3",
           "JUNCTION_RUN_SOFT_TIME_LIMIT": "0"}
    command = [sys.executable, "-m", "celery", "-A", "marketplace", "worker", "-Q", "handlers", "-c", "1",
               "-l", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
               "-n", f"backstop-{os.getpid()}@%h"]
    log = open(tmp_path / "worker.log", "wb")
    proc = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield [("worker", proc, log)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
        print("--- celery worker (last lines) ---\n" + (tmp_path / "worker.log").read_text(errors="replace")[-3000:])
        purge(app)


@pytest.mark.celery
@pytest.mark.skipif(not ON_PG_AND_REDIS, reason="needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://…")
def test_a_run_killed_by_the_hard_limit_in_a_real_worker_is_recorded_at_once(short_limit_worker):
    instance = install(version=make_runtime_version(HANDLERS, {"main.lua": SPIN_LUA}), name="e2e-stuck")
    stuck = event_run(instance, "spin")
    after = [event_run(instance, "fast", input={"n": n}) for n in range(3)]
    # The limits travel in the message, set by the process that sends it.
    run_batch_task.apply_async(([stuck.pk, *(run.pk for run in after)],), time_limit=3, soft_time_limit=0)

    wait_for(lambda: HandlerRun.objects.filter(pk=stuck.pk, status=RunStatus.FAILED).exists(),
             "the stuck run to be recorded", short_limit_worker, timeout=45)
    stuck.refresh_from_db()
    assert stuck.error_code == "timeout" and "hard time limit (3 s)" in stuck.error_message
    batch = HandlerRun.objects.filter(pk__in=[run.pk for run in after])
    wait_for(lambda: batch.filter(status=RunStatus.SUCCEEDED).count() == 3, "the rest of the batch",
             short_limit_worker, timeout=45)
    assert all(run.starts == 1 for run in batch)
    stuck.refresh_from_db()
    assert (stuck.status, stuck.starts) == (RunStatus.FAILED, 1)  # not run again
