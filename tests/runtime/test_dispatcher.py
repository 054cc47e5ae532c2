"""Timer rows kept in step with instances (sync_schedules through the install services),
the dispatcher claiming due rows, and the beat entries it runs from."""
from __future__ import annotations

import threading
from datetime import UTC, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from marketplace.choices import Trigger
from marketplace.exceptions import InvalidInput
from marketplace.models import HandlerRun, Instance
from marketplace.services.deletion import delete_integration, deletion_summary
from marketplace.services.installs import (
    reconfigure_instance,
    set_instance_enabled,
    uninstall_instance,
    upgrade_instance,
)
from runtime.dispatcher import dispatch_due, idempotency_key
from runtime.models import TimerSchedule
from runtime.schedules import DISPATCH_TASK_NAME, HOUSEKEEPING_TASK_NAME, ensure_periodic_tasks, next_slot

from .. import factories
from ..conftest import requires_postgres
from .helpers import install, make_runtime_version, timer

pytestmark = pytest.mark.django_db


def sent():
    """A ``send`` for dispatch_due that records the ids it would publish."""
    ids: list[int] = []
    return ids, ids.extend


def runs_of(instance: Instance):
    return HandlerRun.objects.filter(instance=instance).order_by("pk")


# --- sync_schedules through the install services -----------------------------------------

def test_install_creates_one_row_per_timer_handler():
    before = timezone.now()
    instance = install({
        "tick": timer("1m"),
        "nightly": {"type": "timer", "file": "main.lua", "function": "tick",
                    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"}},
        "status": {"type": "rpc", "file": "main.lua", "function": "tick"},
    })
    rows = {row.handler: row for row in instance.timer_schedules.all()}
    assert set(rows) == {"tick", "nightly"}
    assert rows["tick"].every_seconds == 60 and rows["tick"].cron == ""
    assert before < rows["tick"].next_run_at <= before + timedelta(minutes=1, seconds=1)
    assert rows["nightly"].cron == "0 2 * * *" and rows["nightly"].timezone == "Europe/Berlin"
    assert rows["nightly"].next_run_at.astimezone(UTC).hour in (0, 1)  # 02:00 Berlin
    assert all(row.enabled for row in rows.values())


def test_reconfigure_keeps_the_next_slot():
    instance = install()
    row = instance.timer_schedules.get()
    reconfigure_instance(instance=instance, name="Renamed")
    assert instance.timer_schedules.get().next_run_at == row.next_run_at


def test_upgrade_adds_removes_and_reschedules_timers():
    instance = install({"tick": timer("1m"), "old": timer("5m")})
    first = {row.handler: row for row in instance.timer_schedules.all()}
    v2 = make_runtime_version({"tick": timer("1h"), "new": timer("30s")}, integration=instance.version.integration)
    upgrade_instance(instance=instance, version=v2)
    rows = {row.handler: row for row in instance.timer_schedules.all()}
    assert set(rows) == {"tick", "new"}
    assert rows["tick"].pk == first["tick"].pk and rows["tick"].every_seconds == 3600
    assert rows["new"].every_seconds == 30


def test_disable_and_enable():
    instance = install()
    set_instance_enabled(instance=instance, enabled=False)
    assert not instance.timer_schedules.get().enabled
    assert not TimerSchedule.objects.due(timezone.now() + timedelta(days=1)).filter(instance=instance).exists()
    later = timezone.now()
    set_instance_enabled(instance=instance, enabled=True)
    row = instance.timer_schedules.get()
    assert row.enabled and row.next_run_at > later


def test_uninstall_and_delete_cascade():
    kept, gone = install(), install()
    uninstall_instance(instance=gone)
    assert not TimerSchedule.objects.filter(instance_id=gone.pk).exists()
    integration = kept.version.integration
    assert "1 timer schedules" in deletion_summary(integration).lines
    delete_integration(integration=integration)
    assert not TimerSchedule.objects.exists()


def test_a_schedule_that_does_not_parse_refuses_the_install():
    version = make_runtime_version({"tick": timer("1m")})
    version.manifest["handlers"]["tick"]["schedule"] = {"every": "soon"}
    factories.rewrite_published(version, manifest=version.manifest)  # behind validation's back
    version.refresh_from_db()
    with pytest.raises(InvalidInput) as exc:
        install(version=version)
    assert "handlers.tick.schedule" in exc.value.errors
    assert not Instance.objects.exists()


# --- the dispatcher ------------------------------------------------------------------------

def test_due_timers_get_one_run_each_and_move_to_their_next_slot():
    instance = install()
    row = instance.timer_schedules.get()
    slot = row.next_run_at
    ids, send = sent()
    report = dispatch_due(now=slot, send=send)
    assert report.claimed == report.enqueued == 1
    run = runs_of(instance).get()
    assert (run.handler, run.trigger, run.input) == ("tick", Trigger.TIMER, {"lastRunAt": None})
    assert run.idempotency_key == idempotency_key(row.pk, slot)
    row.refresh_from_db()
    assert row.next_run_at == slot + timedelta(minutes=1)
    assert row.last_run_at == slot
    # The next slot carries lastRunAt; a tick before it finds nothing.
    assert dispatch_due(now=slot + timedelta(seconds=59), send=send).claimed == 0
    dispatch_due(now=slot + timedelta(minutes=1), send=send)
    assert runs_of(instance).last().input == {"lastRunAt": slot.isoformat().replace("+00:00", "Z")}
    assert ids == []  # the test transaction never commits, so nothing was sent


def test_after_downtime_a_timer_runs_once_not_once_per_missed_slot():
    instance = install()
    row = instance.timer_schedules.get()
    now = row.next_run_at + timedelta(hours=3, seconds=20)
    report = dispatch_due(now=now, send=lambda ids: None)
    assert report.enqueued == 1
    row.refresh_from_db()
    assert now < row.next_run_at <= now + timedelta(minutes=1)
    assert row.next_run_at == next_slot(row, now)


def test_nothing_is_enqueued_for_a_disabled_instance_even_if_its_rows_were_left_enabled():
    instance = install()
    Instance.objects.filter(pk=instance.pk).update(enabled=False)  # behind the services' back
    row = instance.timer_schedules.get()
    report = dispatch_due(now=row.next_run_at, send=lambda ids: None)
    assert (report.claimed, report.enqueued, report.skipped_disabled) == (1, 0, 1)
    row.refresh_from_db()
    assert not row.enabled
    assert not runs_of(instance).exists()


def test_a_slot_that_already_has_a_run_is_not_run_twice():
    first, second = install(), install()
    row = first.timer_schedules.get()
    slot = max(row.next_run_at, second.timer_schedules.get().next_run_at)
    HandlerRun.objects.create(instance=first, handler="tick", trigger=Trigger.TIMER,
                              idempotency_key=idempotency_key(row.pk, row.next_run_at))
    report = dispatch_due(now=slot, send=lambda ids: None)
    assert (report.claimed, report.enqueued, report.duplicates) == (2, 1, 1)
    assert runs_of(first).count() == 1 and runs_of(second).count() == 1
    row.refresh_from_db()
    assert row.next_run_at > slot


def test_batches_cover_everything_due(django_assert_max_num_queries):
    version = make_runtime_version({"tick": timer("1m")})
    instances = [install(version=version) for _ in range(25)]
    now = max(i.timer_schedules.get().next_run_at for i in instances)
    # Per batch of 10: is anything due, claim, the instances' queued runs (the queue cap),
    # advance (one UPDATE), insert runs, and two savepoint pairs (the batch's transaction
    # inside the test's, the insert's own).
    with django_assert_max_num_queries(3 * 9):
        report = dispatch_due(now=now, batch_size=10, send=lambda ids: None)
    assert report.claimed == report.enqueued == 25
    assert HandlerRun.objects.filter(trigger=Trigger.TIMER).count() == 25


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_two_dispatchers_at_once_never_run_a_slot_twice():
    """SKIP LOCKED: two dispatchers working the same due rows split them between them."""
    version = make_runtime_version({"tick": timer("1m")})
    instances = [install(version=version) for _ in range(60)]
    now = max(i.timer_schedules.get().next_run_at for i in instances)
    reports, errors = [], []
    barrier = threading.Barrier(2)

    def work():
        try:
            barrier.wait(timeout=10)
            reports.append(dispatch_due(now=now, batch_size=5, send=lambda ids: None))
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sum(r.enqueued for r in reports) == 60
    assert sum(r.duplicates for r in reports) == 0
    assert HandlerRun.objects.filter(trigger=Trigger.TIMER).count() == 60


# --- the beat entries --------------------------------------------------------------------

def test_beat_entries_exist_after_migrate_and_ensuring_them_is_idempotent(settings):
    from django_celery_beat.models import PeriodicTask, PeriodicTasks

    tasks = {t.name: t for t in PeriodicTask.objects.all()}
    assert tasks[DISPATCH_TASK_NAME].task == "runtime.tasks.dispatch_timers"
    assert tasks[DISPATCH_TASK_NAME].interval.every == settings.JUNCTION_DISPATCH_EVERY_SECONDS
    assert tasks[HOUSEKEEPING_TASK_NAME].task == "runtime.tasks.housekeeping"
    changed = PeriodicTasks.last_change()
    ensure_periodic_tasks()
    assert PeriodicTask.objects.filter(name__startswith="junction:").count() == 2
    assert PeriodicTasks.last_change() == changed  # nothing rewritten, beat need not reload
    settings.JUNCTION_DISPATCH_EVERY_SECONDS = 2
    ensure_periodic_tasks()
    assert PeriodicTask.objects.get(name=DISPATCH_TASK_NAME).interval.every == 2


def test_the_beat_entries_name_registered_tasks():
    from django_celery_beat.models import PeriodicTask

    from marketplace.celery import app

    app.loader.import_default_modules()
    for entry in PeriodicTask.objects.filter(name__startswith="junction:"):
        assert entry.task in app.tasks
