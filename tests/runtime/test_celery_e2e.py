"""End to end through a real Celery worker and beat (subprocesses) on Redis + PostgreSQL:
a timer fires on its schedule and writes to its container, and stops once its instance
is disabled. Skipped unless DATABASE_URL is PostgreSQL and CELERY_BROKER_URL is Redis
(the second pass of .ci/run). Every wait is bounded; the subprocesses are always killed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from marketplace.choices import RunStatus, Trigger
from marketplace.models import ContainerEntry, HandlerRun
from marketplace.services.installs import set_instance_enabled
from runtime.schedules import ensure_periodic_tasks

from .helpers import install, make_runtime_version, timer

BASE_DIR = Path(settings.BASE_DIR)
ON_PG_AND_REDIS = (
    os.environ.get("DATABASE_URL", "").split(":")[0] in {"postgres", "postgresql"}
    and os.environ.get("CELERY_BROKER_URL", "").startswith("redis://")
)
pytestmark = [
    pytest.mark.celery,
    pytest.mark.skipif(not ON_PG_AND_REDIS, reason="needs DATABASE_URL=postgres://… and CELERY_BROKER_URL=redis://… "
                       "(the second pass of .ci/run sets both)"),
]

COUNTER_LUA = """
function tick(ctx, input)
  local last = ctx.integration.containersGet("beats", "count")
  local n = (last and last.n or 0) + 1
  ctx.integration.containersSet("beats", "count", { n = n, lastRunAt = input.lastRunAt })
  return { n = n }
end
"""
TIMEOUT = 60


def database_url() -> str:
    """The test database (test_junction…) for the subprocesses."""
    db = connection.settings_dict
    auth = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        auth += ":" + quote(db["PASSWORD"])
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_for(predicate, what: str, procs, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        for name, proc, _ in procs:
            if proc.poll() is not None:
                pytest.fail(f"celery {name} exited with {proc.returncode} while waiting for {what}")
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def purge(app) -> None:
    with app.connection_for_write() as conn:
        for queue in ("celery", "handlers"):
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def celery_processes(transactional_db, tmp_path):
    from marketplace.celery import app

    ensure_periodic_tasks()
    purge(app)  # nothing left over from an earlier run
    env = {**os.environ, "DATABASE_URL": database_url(), "JUNCTION_DISPATCH_EVERY_SECONDS": "1"}
    celery = [sys.executable, "-m", "celery", "-A", "marketplace"]
    commands = {
        "worker": celery + ["worker", "-Q", "celery,handlers", "-c", "2", "-l", "INFO", "--without-mingle",
                            "--without-gossip", "--without-heartbeat", "-n", f"e2e-{os.getpid()}@%h"],
        "beat": celery + ["beat", "-l", "INFO", "-s", str(tmp_path / "beat-schedule"),
                          "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
    }
    procs = []
    try:
        for name, command in commands.items():
            log = open(tmp_path / f"{name}.log", "wb")
            proc = subprocess.Popen(command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            procs.append((name, proc, log))
        yield procs
    finally:
        for _name, proc, _log in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _name, proc, _log in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            log.close()
        for name, *_ in procs:
            tail = (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
            print(f"--- celery {name} (last lines) ---\n{tail}")
        purge(app)


def timer_runs(instance):
    return HandlerRun.objects.filter(instance=instance, trigger=Trigger.TIMER)


def test_a_timer_fires_through_beat_and_worker_and_stops_when_disabled(celery_processes, settings):
    settings.JUNCTION_MIN_TIMER_SECONDS = 1  # a 2-second timer keeps the test short
    version = make_runtime_version({"tick": timer("2s")}, {"main.lua": COUNTER_LUA})
    watched = install(version=version, name="watched")
    control = install(version=version, name="control")

    # It fires on its schedule and writes to its container, again and again.
    wait_for(lambda: timer_runs(watched).filter(status=RunStatus.SUCCEEDED).count() >= 2,
             "two successful timer runs", celery_processes)
    entry = ContainerEntry.objects.get(instance=watched, container="beats", key="count")
    assert entry.value["n"] >= 2
    assert entry.value["lastRunAt"].endswith("Z")  # the second run was told when the first ran
    assert all(run.starts == 1 for run in timer_runs(watched).filter(status=RunStatus.SUCCEEDED))

    # Disabled, it stops: while the control instance runs three more times, no new run appears.
    set_instance_enabled(instance=watched, enabled=False)
    marker = HandlerRun.objects.order_by("-pk").values_list("pk", flat=True).first()
    wait_for(lambda: timer_runs(control).filter(pk__gt=marker, status=RunStatus.SUCCEEDED).count() >= 3,
             "three more runs of the control instance", celery_processes)
    assert not timer_runs(watched).filter(pk__gt=marker).exists()
    # Runs queued before the disable were refused at pickup, or had already started.
    refused = timer_runs(watched).filter(status=RunStatus.FAILED)
    assert all(run.error_code == "instance_disabled" for run in refused)
    slots = [run.idempotency_key for run in timer_runs(control)]
    assert len(slots) == len(set(slots))


BATCH_LUA = """
function slow(ctx, input)
  local started = os.clock()
  while os.clock() - started < 2 do end
  return { slow = true }
end
function fast(ctx, input) return { n = input.payload.n } end
"""


def worker_children(procs) -> list[int]:
    """The prefork pool processes of the worker started by ``celery_processes``."""
    (worker,) = [proc.pid for name, proc, _ in procs if name == "worker"]
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker:
            children.append(int(stat.parent.name))
    return children


def test_a_batch_whose_worker_dies_is_redelivered_and_no_run_is_lost_or_run_twice(celery_processes):
    from runtime.tasks import run_batch_task

    limits = {"timeoutMs": 20_000, "instructions": 1_000_000_000}
    handlers = {
        "slow": {"type": "event", "event": "slow", "file": "main.lua", "function": "slow", "limits": limits},
        "fast": {"type": "event", "event": "fast", "file": "main.lua", "function": "fast"},
    }
    instance = install(version=make_runtime_version(handlers, {"main.lua": BATCH_LUA}), name="batch")
    slow = HandlerRun.objects.create(instance=instance, handler="slow", trigger=Trigger.EVENT, input={})
    fast = [HandlerRun.objects.create(instance=instance, handler="fast", trigger=Trigger.EVENT,
                                      input={"payload": {"n": n}}) for n in range(10)]
    run_batch_task.apply_async(([slow.pk, *(run.pk for run in fast)],))

    wait_for(lambda: HandlerRun.objects.filter(pk=slow.pk, status=RunStatus.RUNNING).exists(),
             "the slow run to start", celery_processes)
    for pid in worker_children(celery_processes):  # the worker process running it dies
        os.kill(pid, signal.SIGKILL)

    batch = HandlerRun.objects.filter(pk__in=[slow.pk, *(run.pk for run in fast)])
    wait_for(lambda: batch.filter(status=RunStatus.SUCCEEDED).count() == 11, "every run of the batch",
             celery_processes)
    slow.refresh_from_db()
    assert slow.starts == 2  # picked up again after its worker died...
    for run in batch.exclude(pk=slow.pk):
        assert run.starts == 1 and run.result == {"n": run.input["payload"]["n"]}
        assert run.finished_at <= slow.started_at  # ...after the runs it had held up
