"""run_handler_task as a worker runs it (called in-process; the broker path is covered by
test_celery_e2e): pickups, lost workers, disabled instances, retries with backoff, replay,
housekeeping, and the Celery settings that fit untrusted work."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import Conflict, PermissionDenied
from marketplace.models import CacheEntry, ContainerEntry, HandlerRun
from marketplace.services.installs import set_instance_enabled
from runtime import runs
from runtime.dispatcher import dispatch_due
from runtime.tasks import batch_seconds, housekeeping, run_batch_task, run_handler_task

from .. import factories
from .helpers import install, timer

pytestmark = pytest.mark.django_db

FAILING_LUA = """
function tick(ctx, input)
  ctx.log.info("trying", { lastRunAt = input.lastRunAt })
  error("device unreachable")
end
function ok(ctx, input) return { ok = true } end
"""


def dispatched_run(instance) -> HandlerRun:
    row = instance.timer_schedules.get()
    dispatch_due(now=row.next_run_at, send=lambda ids: None)
    return HandlerRun.objects.filter(instance=instance, trigger=Trigger.TIMER).latest("pk")


def test_a_queued_timer_run_executes_and_records_its_outcome():
    instance = install()
    run = dispatched_run(instance)
    assert run_handler_task(run.pk) == "executed"
    run.refresh_from_db()
    assert (run.status, run.result, run.starts) == (RunStatus.SUCCEEDED, {"ok": True}, 1)
    assert ContainerEntry.objects.get(instance=instance, container="beats", key="last").value == {"lastRunAt": "none"}


def test_a_redelivered_finished_run_is_not_run_again():
    instance = install()
    run = dispatched_run(instance)
    run_handler_task(run.pk)
    assert run_handler_task(run.pk) == "finished"
    run.refresh_from_db()
    assert run.starts == 1


def test_a_run_whose_row_is_gone_is_dropped():
    assert run_handler_task(987654) == "gone"


def test_a_queued_run_of_an_instance_disabled_since_is_refused():
    instance = install()
    run = dispatched_run(instance)
    set_instance_enabled(instance=instance, enabled=False)
    assert run_handler_task(run.pk) == "refused"
    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, "instance_disabled")
    assert not ContainerEntry.objects.filter(instance=instance).exists()


def test_a_run_that_keeps_killing_its_worker_is_recorded_as_lost(settings):
    """A redelivered message for a ``running`` run means its worker died; it runs again
    until it has been picked up JUNCTION_RUN_MAX_STARTS times, then it is failed."""
    settings.JUNCTION_RUN_MAX_STARTS = 3
    instance = install()
    run = dispatched_run(instance)
    HandlerRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, starts=2, started_at=timezone.now())
    assert runs.process_run(run.pk, redelivered=True) == "executed"  # third pickup: runs
    run.refresh_from_db()
    assert (run.status, run.starts) == (RunStatus.SUCCEEDED, 3)

    lost = dispatched_run(instance)
    HandlerRun.objects.filter(pk=lost.pk).update(status=RunStatus.RUNNING, starts=3, started_at=timezone.now())
    assert runs.process_run(lost.pk, redelivered=True) == "lost"
    lost.refresh_from_db()
    assert (lost.status, lost.error_code, lost.starts) == (RunStatus.FAILED, "worker_lost", 3)
    assert not HandlerRun.objects.filter(first_run=lost).exists()  # and it is not retried


def test_a_second_message_for_a_run_in_progress_does_not_run_it_twice(settings):
    instance = install()
    run = dispatched_run(instance)
    HandlerRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, starts=1, started_at=timezone.now())
    assert run_handler_task(run.pk) == "duplicate"
    run.refresh_from_db()
    assert (run.status, run.starts) == (RunStatus.RUNNING, 1)
    # Unless it started longer ago than the hard time limit: then its worker is gone.
    started = timezone.now() - timedelta(seconds=settings.JUNCTION_RUN_TIME_LIMIT + 1)
    HandlerRun.objects.filter(pk=run.pk).update(started_at=started)
    assert run_handler_task(run.pk) == "executed"


# --- retries -------------------------------------------------------------------------------

DEFAULT_RETRY = {"attempts": 3, "backoff": 10}


def failing_instance(retry: dict | None = DEFAULT_RETRY):
    handlers = {"tick": timer("1m", **({"retry": retry} if retry else {})),
                "rpc": {"type": "rpc", "file": "main.lua", "function": "ok"}}
    return install(handlers, {"main.lua": FAILING_LUA})


def test_failed_timer_runs_are_retried_with_doubling_backoff_up_to_attempts():
    instance = failing_instance()
    first = dispatched_run(instance)
    run_handler_task(first.pk)
    first.refresh_from_db()
    assert (first.status, first.error_code) == (RunStatus.FAILED, "lua_error")
    assert "device unreachable" in first.error_message

    second = HandlerRun.objects.get(first_run=first, attempt=2)
    assert (second.trigger, second.input, second.status) == (Trigger.RETRY, first.input, RunStatus.QUEUED)
    assert runs.retry_delay(backoff=10, attempt=1) == 10
    run_handler_task(second.pk)
    third = HandlerRun.objects.get(first_run=first, attempt=3)
    assert runs.retry_delay(backoff=10, attempt=2) == 20
    run_handler_task(third.pk)
    third.refresh_from_db()
    assert third.status == RunStatus.FAILED
    # attempts: 3 counts the first run: no fourth.
    assert HandlerRun.objects.filter(first_run=first).count() == 2
    # A redelivered failed run does not queue its retry twice.
    run_handler_task(first.pk)
    assert HandlerRun.objects.filter(first_run=first).count() == 2


def test_schedule_retry_reports_its_countdown():
    instance = failing_instance({"attempts": 5, "backoff": 7})
    first = dispatched_run(instance)
    run_handler_task(first.pk)
    retry = HandlerRun.objects.get(first_run=first)
    retry_run = runs.schedule_retry(HandlerRun.objects.get(pk=first.pk))
    assert retry_run is None  # already queued: idempotent
    HandlerRun.objects.filter(pk=retry.pk).update(status=RunStatus.FAILED)
    nxt = runs.schedule_retry(HandlerRun.objects.get(pk=retry.pk))
    assert (nxt.attempt, nxt.countdown) == (3, 14)


def test_retry_delays_are_capped(settings):
    settings.JUNCTION_RETRY_MAX_DELAY_SECONDS = 60
    assert runs.retry_delay(backoff=10, attempt=9) == 60


def test_no_retry_without_a_retry_policy_or_for_rpc_runs():
    instance = failing_instance(retry=None)
    run = dispatched_run(instance)
    run_handler_task(run.pk)
    assert not HandlerRun.objects.filter(first_run=run).exists()

    instance = failing_instance()
    manual = factories.make_run(instance, handler="tick", trigger=Trigger.MANUAL)
    run_handler_task(manual.pk)
    manual.refresh_from_db()
    assert manual.status == RunStatus.FAILED
    assert not HandlerRun.objects.filter(first_run=manual).exists()


def test_no_retry_once_the_instance_is_disabled():
    instance = failing_instance(retry={"attempts": 3, "backoff": 0})
    run = dispatched_run(instance)
    HandlerRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error_code="lua_error")
    set_instance_enabled(instance=instance, enabled=False)
    assert runs.schedule_retry(HandlerRun.objects.get(pk=run.pk)) is None
    assert not HandlerRun.objects.filter(first_run=run).exists()


# --- replay --------------------------------------------------------------------------------

def test_replay_runs_a_finished_run_again_with_its_input(publisher, acme):
    instance = install(organization=acme)
    original = dispatched_run(instance)
    run_handler_task(original.pk)
    replay = runs.replay_run(run=original, user=publisher)
    assert (replay.trigger, replay.input, replay.first_run_id, replay.attempt) == (
        Trigger.REPLAY, original.input, original.pk, 2)
    run_handler_task(replay.pk)
    again = runs.replay_run(run=replay, user=publisher)
    assert (again.first_run_id, again.attempt) == (original.pk, 3)


def test_replay_refusals(outsider, acme):
    instance = install(organization=acme)
    queued = dispatched_run(instance)
    with pytest.raises(Conflict):
        runs.replay_run(run=queued)
    run_handler_task(queued.pk)
    with pytest.raises(PermissionDenied):
        runs.replay_run(run=queued, user=outsider)
    set_instance_enabled(instance=instance, enabled=False)
    with pytest.raises(Conflict):
        runs.replay_run(run=queued)


# --- housekeeping --------------------------------------------------------------------------

def test_housekeeping_prunes_old_runs_purges_expired_cache_and_fails_stale_runs(settings, eager):
    settings.JUNCTION_RUN_RETENTION_DAYS = 30
    instance = install()
    now = timezone.now()
    old = factories.make_run(instance, status=RunStatus.SUCCEEDED)
    recent = factories.make_run(instance, status=RunStatus.FAILED)
    old_queued = factories.make_run(instance)  # trigger "manual", handler "sync"
    HandlerRun.objects.filter(pk__in=[old.pk, old_queued.pk]).update(created_at=now - timedelta(days=31))
    stale = factories.make_run(instance, status=RunStatus.RUNNING,
                               started_at=now - timedelta(seconds=settings.JUNCTION_RUN_TIME_LIMIT + 120))
    busy = factories.make_run(instance, status=RunStatus.RUNNING, started_at=now)
    expired = factories.make_cache_entry(instance, key="old")
    CacheEntry.objects.filter(pk=expired.pk).update(expires_at=now - timedelta(seconds=1))
    fresh = factories.make_cache_entry(instance, key="fresh")

    done = housekeeping()
    # The old queued run was never picked up: its message was lost, so it is sent again.
    assert done == {"runs_pruned": 1, "cache_purged": 1, "stale_failed": 1, "requeued": 1, "orphan_files_removed": 0,
                    "stalled_instances_settled": 0, "callback_tokens_pruned": 0}
    assert HandlerRun.objects.get(pk=old_queued.pk).status == RunStatus.FAILED  # handler "sync" is not in this version
    assert set(HandlerRun.objects.values_list("pk", flat=True)) == {recent.pk, old_queued.pk, stale.pk, busy.pk}
    stale.refresh_from_db()
    assert (stale.status, stale.error_code) == (RunStatus.FAILED, "worker_lost")
    assert list(CacheEntry.objects.values_list("pk", flat=True)) == [fresh.pk]


# --- Celery settings -------------------------------------------------------------------------

def test_celery_settings_fit_untrusted_work():
    from marketplace.celery import app
    from runtime.limits import setting

    conf = app.conf
    for task in ("runtime.tasks.run_handler_task", "runtime.tasks.run_batch_task"):
        assert conf.task_routes[task]["queue"] == "handlers"
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    sandbox_max = setting("JUNCTION_RUNTIME_MAX_TIMEOUT_MS") / 1000
    visibility = 3600  # the Redis transport option, and its default
    assert sandbox_max < conf.task_soft_time_limit < conf.task_time_limit <= visibility / 10
    assert conf.worker_max_tasks_per_child and conf.worker_max_memory_per_child
    assert run_handler_task.acks_late and run_batch_task.acks_late
    assert run_handler_task.reject_on_worker_lost and run_batch_task.reject_on_worker_lost
    # A batch starts no run it could not finish inside the soft limit.
    assert 0 < batch_seconds() <= conf.task_soft_time_limit - sandbox_max
    assert django_settings.JUNCTION_RUN_MAX_STARTS >= 1


@pytest.fixture
def eager():
    """Tasks sent run in this process (the broker is exercised by test_celery_e2e)."""
    from marketplace.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_queued_runs_whose_message_was_lost_are_sent_again(eager, settings):
    instance = install()
    now = timezone.now()
    lost = factories.make_run(instance, handler="tick", trigger=Trigger.TIMER)
    recent = factories.make_run(instance, handler="tick", trigger=Trigger.TIMER)
    waiting_retry = factories.make_run(instance, handler="tick", trigger=Trigger.RETRY)
    long_ago = now - timedelta(seconds=settings.JUNCTION_REQUEUE_AFTER_SECONDS + 60)
    HandlerRun.objects.filter(pk__in=[lost.pk, waiting_retry.pk]).update(created_at=long_ago)
    assert runs.requeue_stranded_runs(now=now) == 1
    assert HandlerRun.objects.get(pk=lost.pk).status == RunStatus.SUCCEEDED
    assert HandlerRun.objects.get(pk=recent.pk).status == RunStatus.QUEUED
    assert HandlerRun.objects.get(pk=waiting_retry.pk).status == RunStatus.QUEUED


def test_of_two_pickups_of_one_queued_run_only_the_first_takes_it():
    instance = install()
    run = dispatched_run(instance)
    assert [runs.claim_run(run.pk), runs.claim_run(run.pk)] == ["execute", "duplicate"]
