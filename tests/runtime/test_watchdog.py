"""The worker's per-run watchdog (runtime.watchdog): a run stuck where the sandbox cannot
interrupt it is recorded as ``timeout`` at its own limit plus the kill margin and its pool
process killed, instead of holding the worker until the task's hard time limit.

The in-process tests install a watchdog whose kill only records the call (and lets the
stuck run go): the record is written to the real database by the watchdog's own thread and
connection, so they use ``transactional_db``. The stuck code is a ctx call that blocks in
Python (as a loop inside a C function would, no hook runs there), so the tests do not
depend on any one hole of the sandbox. The end-to-end test runs a real worker on Redis +
PostgreSQL (see test_celery_e2e for the set-up)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from django.db import connection, transaction

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from runtime import runs, tasks, watchdog, worker
from runtime.ctx import Ctx
from runtime.worker import execute_run

from .helpers import install, make_runtime_version
from .test_celery_e2e import BASE_DIR, ON_PG_AND_REDIS, database_url, purge, wait_for

STUCK_LUA = """
function stuck(ctx, input)
  ctx.log.info("before")
  ctx.log.warn("stuck here")
  return { unreachable = true }
end
function fast(ctx, input) return { n = input.n } end
"""
# string.rep of an empty string loops inside C once per repetition (issue 9). Should the
# sandbox come to refuse it, the run fails with that refusal instead.
C_LOOP_LUA = """
function c_loop(ctx, input)
  return { n = #string.rep("", math.maxinteger) }
end
"""
FAST = {"timeoutMs": 1000}
HANDLERS = {
    "stuck": {"type": "event", "event": "stuck", "file": "main.lua", "function": "stuck", "limits": FAST},
    "fast": {"type": "event", "event": "fast", "file": "main.lua", "function": "fast", "limits": FAST},
    "c_loop": {"type": "event", "event": "c", "file": "c.lua", "function": "c_loop", "limits": FAST},
}
FILES = {"main.lua": STUCK_LUA, "c.lua": C_LOOP_LUA}
SAFETY_SECONDS = 30  # no wait in these tests is meant to come near it


class Kills:
    """The watchdog's last action, recorded instead of done; it also lets the stuck call go."""

    def __init__(self):
        self.pids: list[int] = []
        self.done = threading.Event()

    def __call__(self) -> None:
        self.pids.append(os.getpid())
        self.done.set()


@pytest.fixture
def kills(settings):
    settings.JUNCTION_RUNTIME_KILL_MARGIN_MS = 300
    recorded = Kills()
    dog = watchdog.Watchdog(kill=recorded, record_seconds=2)
    previous = watchdog.install(dog)
    recorded.watchdog = dog
    yield recorded
    for started in {dog, recorded.watchdog}:
        started.stop()
    if previous is None:
        watchdog.uninstall()
    else:
        watchdog.install(previous)


@pytest.fixture
def stuck_call(monkeypatch, kills):
    """``ctx.log.warn`` blocks in Python until the watchdog's kill (at most SAFETY_SECONDS)."""
    call = Ctx.call

    def stuck(self, name, args, deadline):
        if name == "log.warn":
            kills.done.wait(SAFETY_SECONDS)
        return call(self, name, args, deadline)

    monkeypatch.setattr(Ctx, "call", stuck)


def event_run(instance, handler: str, **fields) -> HandlerRun:
    return HandlerRun.objects.create(instance=instance, handler=handler, trigger=Trigger.EVENT,
                                     input=fields.pop("input", {}), **fields)


def test_a_stuck_run_in_a_task_is_recorded_as_timeout_then_its_process_is_killed(transactional_db, kills,
                                                                                  stuck_call):
    instance = install(HANDLERS, FILES, name="stuck")
    run = event_run(instance, "stuck")
    after = event_run(instance, "fast", input={"n": 1})

    # A kill that returns (only here) leaves the run's thread; it must not record anything.
    with pytest.raises(watchdog.Killed):
        tasks._process(run.pk, redelivered=False)

    assert kills.pids == [os.getpid()]
    run.refresh_from_db()
    assert (run.status, run.error_code, run.starts) == (RunStatus.FAILED, "timeout", 1)
    assert "stopped by the platform's backstop after" in run.error_message and "1000 ms" in run.error_message
    assert run.duration_ms >= 1000 and run.finished_at is not None and run.result is None
    assert [line["message"] for line in run.logs] == ["before"]  # the lines it wrote are kept

    # The message comes back (reject_on_worker_lost): the run is finished, not run again, not
    # taken for lost, and the rest of its batch goes on in order.
    assert worker.redelivery_order([run.pk, after.pk]) == ([run.pk, after.pk], None)
    assert tasks._process(run.pk, redelivered=True) == "finished"
    assert tasks._process(after.pk, redelivered=True) == "executed"
    run.refresh_from_db()
    after.refresh_from_db()
    assert (run.status, run.error_code, run.starts) == (RunStatus.FAILED, "timeout", 1)
    assert (after.status, after.result) == (RunStatus.SUCCEEDED, {"n": 1})
    assert kills.pids == [os.getpid()]


def test_a_run_that_ends_in_time_is_disarmed(transactional_db, kills):
    instance = install(HANDLERS, FILES, name="in-time")
    run = event_run(instance, "fast", input={"n": 7})

    assert tasks._process(run.pk, redelivered=False) == "executed"
    time.sleep((1000 + 300) / 1000 + 0.3)  # past the kill time it would have had

    assert kills.pids == []
    run.refresh_from_db()
    assert (run.status, run.result) == (RunStatus.SUCCEEDED, {"n": 7})


def test_runs_outside_the_task_path_are_not_watched(transactional_db, kills, monkeypatch):
    """A web request's run is isolated (its child has its own kill), a test's or a command's
    in-process run is not the worker's: neither arms the process's watchdog."""
    instance = install(HANDLERS, FILES, name="not-watched")
    run = event_run(instance, "stuck")
    call = Ctx.call

    def slow(self, name, args, deadline):
        if name == "log.warn":
            time.sleep((1000 + 300) / 1000 + 0.3)  # past the kill time, then it returns
        return call(self, name, args, deadline)

    monkeypatch.setattr(Ctx, "call", slow)

    execute_run(run.pk)

    assert kills.pids == []
    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, "timeout")  # the sandbox's own check
    assert "backstop" not in run.error_message


def test_the_watchdog_never_overwrites_an_outcome_or_a_later_pickup(transactional_db, kills):
    instance = install(HANDLERS, FILES, name="recorded")
    finished = event_run(instance, "fast", status=RunStatus.SUCCEEDED, starts=1, result={"n": 1})
    picked_again = event_run(instance, "fast", status=RunStatus.RUNNING, starts=2)
    dog = kills.watchdog

    for run in (finished, picked_again):
        kills.done.clear()
        watch = dog.arm(run_id=run.pk, starts=1, timeout_ms=1, margin_ms=0)
        assert kills.done.wait(SAFETY_SECONDS)
        with pytest.raises(watchdog.Killed):
            dog.disarm(watch)
        dog.stop()  # the thread ends with its kill (the process does); a new one for the next run
        dog = watchdog.Watchdog(kill=kills, record_seconds=2)
        kills.watchdog = dog
        watchdog.install(dog)

    finished.refresh_from_db()
    picked_again.refresh_from_db()
    assert (finished.status, finished.result, finished.error_code) == (RunStatus.SUCCEEDED, {"n": 1}, "")
    assert (picked_again.status, picked_again.starts, picked_again.error_code) == (RunStatus.RUNNING, 2, "")
    assert len(kills.pids) == 2  # stuck past its limit all the same: the process goes


def test_a_write_lock_held_by_the_stuck_thread_delays_the_kill_by_the_record_timeout_at_most(transactional_db,
                                                                                            kills):
    """The run's thread holds the run's row (PostgreSQL) or the database's write lock
    (SQLite) while stuck: the watchdog's record cannot be written, and it kills anyway."""
    instance = install(HANDLERS, FILES, name="locked")
    run = event_run(instance, "fast", status=RunStatus.RUNNING, starts=1)
    dog = kills.watchdog

    with transaction.atomic():
        HandlerRun.objects.select_for_update().filter(pk=run.pk).update(error_message="held")
        watch = dog.arm(run_id=run.pk, starts=1, timeout_ms=1, margin_ms=0)
        assert kills.done.wait(SAFETY_SECONDS)  # no deadlock: killed while the lock is held
        with pytest.raises(watchdog.Killed):
            dog.disarm(watch)
        assert HandlerRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    # The lock goes with the process. A PostgreSQL UPDATE that was waiting on it is applied
    # then (it is still conditional on the run's pickup); SQLite refused it at once.
    dog.stop()
    deadline = time.monotonic() + SAFETY_SECONDS
    while any(t.name == "junction-run-watchdog-record" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.refresh_from_db()
    if connection.vendor == "postgresql":
        assert (run.status, run.error_code) == (RunStatus.FAILED, "timeout")
    else:
        assert (run.status, run.error_code) == (RunStatus.RUNNING, "")  # the redelivery takes it


# --- end to end: a real worker whose pool process the watchdog kills ----------------------

@pytest.fixture
def stuck_worker(transactional_db, tmp_path):
    """A worker with the default time limits (soft 70 s, hard 80 s) and one pool process whose
    ``ctx.log.warn`` never returns (tests/runtime/stuck_worker_app.py)."""
    from marketplace.celery import app

    purge(app)
    env = {**os.environ, "DATABASE_URL": database_url(), "JUNCTION_RUN_WATCHDOG": "1"}
    command = [sys.executable, "-m", "celery", "-A", "tests.runtime.stuck_worker_app", "worker", "-Q", "handlers",
               "-c", "1", "-l", "INFO", "--without-mingle", "--without-gossip", "--without-heartbeat",
               "-n", f"watchdog-{os.getpid()}@%h"]
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
        print("--- celery worker (last lines) ---\n" + (tmp_path / "worker.log").read_text(errors="replace")[-4000:])
        purge(app)


@pytest.mark.celery
@pytest.mark.skipif(not ON_PG_AND_REDIS, reason="needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://…")
def test_a_stuck_run_in_a_real_worker_is_recorded_in_seconds_and_the_worker_goes_on(stuck_worker, settings):
    from runtime.tasks import run_batch_task, run_handler_task

    assert settings.JUNCTION_RUN_TIME_LIMIT >= 60  # only the watchdog can end the runs in time
    instance = install(version=make_runtime_version(HANDLERS, FILES), name="e2e-watchdog")
    stuck = event_run(instance, "stuck")
    c_loop = event_run(instance, "c_loop")
    after = [event_run(instance, "fast", input={"n": n}) for n in range(2)]
    run_batch_task.apply_async(([stuck.pk, c_loop.pk, *(run.pk for run in after)],))

    finished = HandlerRun.objects.filter(status__in=runs.FINISHED)
    wait_for(lambda: finished.filter(pk=stuck.pk).exists(), "the stuck run to be recorded", stuck_worker,
             timeout=SAFETY_SECONDS)
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error_code) == (RunStatus.FAILED, "timeout")
    assert "stopped by the platform's backstop" in stuck.error_message
    assert [line["message"] for line in stuck.logs] == ["before"]

    batch = HandlerRun.objects.filter(pk__in=[run.pk for run in after])
    wait_for(lambda: batch.filter(status=RunStatus.SUCCEEDED).count() == 2, "the rest of the batch",
             stuck_worker, timeout=SAFETY_SECONDS)
    c_loop.refresh_from_db()
    assert c_loop.status == RunStatus.FAILED  # never succeeded: stopped by the watchdog or refused
    if c_loop.error_code == "timeout":
        assert "backstop" in c_loop.error_message or "time limit" in c_loop.error_message
    else:
        assert c_loop.error_code not in ("", "internal_error", "worker_lost")

    # The worker keeps serving: a run sent afterwards succeeds. Nothing ran twice.
    later = event_run(instance, "fast", input={"n": 9})
    run_handler_task.apply_async((later.pk,))
    wait_for(lambda: HandlerRun.objects.filter(pk=later.pk, status=RunStatus.SUCCEEDED).exists(),
             "a later run", stuck_worker, timeout=SAFETY_SECONDS)
    for run in HandlerRun.objects.filter(pk__in=[stuck.pk, c_loop.pk, later.pk, *(run.pk for run in after)]):
        assert run.starts == 1, run
    assert stuck_worker[0][1].poll() is None  # the worker itself never went down
