"""An idle worker is quiet: Celery's lines about the every-second dispatcher tick (beat's
"Sending due task", the worker's "received" and "succeeded") are DEBUG lines
(marketplace.celery), while the same lines about handler runs stay at INFO, and so does the
dispatcher's own line when a tick queued runs."""
from __future__ import annotations

import logging

import pytest
from celery.app.trace import LOG_RECEIVED, LOG_SUCCESS

from runtime.dispatcher import dispatch_due

from .helpers import install, make_runtime_version, timer

TICK = "runtime.tasks.dispatch_timers"


def celery_lines(task_name: str) -> None:
    """What Celery logs for one task, as Celery logs it."""
    context = {"id": "d2c1", "name": task_name, "args": "()", "kwargs": "{}", "eta": None}
    logging.getLogger("celery.worker.strategy").info(LOG_RECEIVED, context, extra={"data": context})
    logging.getLogger("celery.app.trace").info(LOG_SUCCESS, {**context, "return_value": "0", "runtime": 0.003})
    logging.getLogger("celery.beat").info("Scheduler: Sending due task %s (%s)", "dispatch-timers", task_name)


def test_celerys_lines_about_the_tick_are_not_logged_at_info(caplog):
    with caplog.at_level(logging.INFO):
        celery_lines(TICK)
    assert caplog.records == []


def test_celerys_lines_about_the_tick_are_debug_lines(caplog):
    with caplog.at_level(logging.DEBUG):
        celery_lines(TICK)
    assert [(record.name, record.levelname) for record in caplog.records] == [
        ("celery.worker.strategy", "DEBUG"), ("celery.app.trace", "DEBUG"), ("celery.beat", "DEBUG"),
    ]


def test_celerys_lines_about_handler_runs_stay_at_info(caplog):
    with caplog.at_level(logging.INFO):
        celery_lines("runtime.tasks.run_handler_task")
    assert [record.levelname for record in caplog.records] == ["INFO", "INFO", "INFO"]
    assert "run_handler_task" in caplog.records[1].getMessage()


@pytest.mark.django_db
def test_a_tick_logs_at_info_only_when_it_queued_runs(caplog):
    instance = install(version=make_runtime_version({"tick": timer("1m")}), name="ticking")
    due = instance.timer_schedules.get().next_run_at
    with caplog.at_level(logging.INFO, logger="runtime.dispatcher"):
        dispatch_due(now=due, send=lambda ids: None)
        dispatch_due(now=due, send=lambda ids: None)  # nothing due any more
    assert [record.getMessage().split(" in ")[0] for record in caplog.records] == [
        "dispatched 1 timer runs (1 claimed)",
    ]
