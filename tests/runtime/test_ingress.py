"""The ingress window (runtime/ingress.py): runs of events posted one at a time go in
batches. Messages are really published to the configured broker (the filesystem broker or
Redis); ``after_task_publish`` records each one, and a test that needs the runs executed
runs each recorded message's task in this process, as a worker would run it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from celery.signals import after_task_publish
from django.conf import settings
from django.db import OperationalError, connection
from django.utils import timezone

from marketplace.celery import app
from marketplace.choices import RunStatus
from marketplace.models import HandlerRun
from runtime import ingress, runs
from runtime.events import post_event

from .helpers import install

EVENT_LUA = """
function handle(ctx, input) return { n = input.payload.n } end
"""
HANDLERS = {"onPing": {"type": "event", "event": "ping", "file": "main.lua", "function": "handle"}}
# Run ids no test database holds: a message for one is dropped by the worker ("gone").
NO_SUCH_RUNS = [2**40 + 1, 2**40 + 2, 2**40 + 3]
TIMEOUT = 15


class Published(list):
    """(task name, run ids) of each message published, in order."""

    def run_ids(self) -> list[int]:
        return [run_id for _, ids in self for run_id in ids]

    def execute(self) -> None:
        """Run every recorded message's task here, as a worker would."""
        for name, ids in list(self):
            args = (ids,) if name == "runtime.tasks.run_batch_task" else (ids[0],)
            app.tasks[name].apply(args=args)


@pytest.fixture
def published():
    sent = Published()

    def record(sender=None, body=None, headers=None, **_):
        args = body[0]
        sent.append((headers["task"], list(args[0]) if isinstance(args[0], list) else [args[0]]))

    after_task_publish.connect(record, weak=False)
    yield sent
    after_task_publish.disconnect(record)


@pytest.fixture
def window(monkeypatch, settings):
    """A fresh window for the test (a flusher thread left by another test keeps its own)."""
    settings.JUNCTION_INGRESS_WINDOW_MS, settings.JUNCTION_INGRESS_WINDOW_RUNS = 50, 16
    fresh = ingress.Window()
    monkeypatch.setattr(ingress, "window", fresh)
    yield fresh
    fresh._forget()


def instance():
    return install(HANDLERS, {"main.lua": EVENT_LUA})


def wait_until(predicate, what: str):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out after {TIMEOUT}s waiting for {what}")


def test_a_burst_from_several_threads_goes_in_fewer_messages_and_every_run_executes(transactional_db, window,
                                                                                     published):
    target = instance()
    posted: list[int] = []
    threads, per_thread = 8, 12

    def post(n: int) -> list[HandlerRun]:
        # SQLite's in-memory test database (shared cache) answers "table is locked" to a
        # concurrent writer at once, ignoring the busy timeout: post again, as a sender would.
        for _ in range(200):
            try:
                return post_event(instance=target, event="ping", payload={"n": n})
            except OperationalError as exc:
                if "locked" not in str(exc):
                    raise
                time.sleep(0.005)
        raise AssertionError("the database stayed locked")

    def poster(thread: int) -> None:
        try:
            for n in range(per_thread):
                posted.extend(run.pk for run in post(thread * 100 + n))
        finally:
            connection.close()

    workers = [threading.Thread(target=poster, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wait_until(lambda: len(published.run_ids()) >= len(posted), "the windows to be sent")

    assert len(posted) == threads * per_thread
    assert sorted(published.run_ids()) == sorted(posted)  # each run in exactly one message
    assert len(published) < len(posted)
    assert all(len(ids) <= settings.JUNCTION_INGRESS_WINDOW_RUNS for _, ids in published)
    published.execute()
    statuses = HandlerRun.objects.filter(pk__in=posted).values_list("status", flat=True)
    assert list(statuses) == [RunStatus.SUCCEEDED] * len(posted)
    assert sorted(HandlerRun.objects.filter(pk__in=posted).values_list("result__n", flat=True)) == sorted(
        t * 100 + n for t in range(threads) for n in range(per_thread))


@pytest.mark.django_db
def test_the_first_run_after_a_quiet_spell_goes_at_once_and_the_next_ones_gather(window, published, settings,
                                                                                 django_capture_on_commit_callbacks):
    settings.JUNCTION_INGRESS_WINDOW_MS = 60_000  # the flusher would wait a minute: nothing sent behind our back
    target = instance()
    with django_capture_on_commit_callbacks(execute=True):
        first = post_event(instance=target, event="ping", payload={"n": 1})
    assert published == [("runtime.tasks.run_handler_task", [first[0].pk])]

    later = []
    for n in range(2, 5):
        with django_capture_on_commit_callbacks(execute=True):
            later += post_event(instance=target, event="ping", payload={"n": n})
    assert len(published) == 1
    assert window.pending() == [run.pk for run in later]

    window.flush()
    assert published[1:] == [("runtime.tasks.run_batch_task", [run.pk for run in later])]


@pytest.mark.django_db
def test_a_full_window_is_sent_by_the_poster_without_waiting(window, published, settings,
                                                            django_capture_on_commit_callbacks):
    settings.JUNCTION_INGRESS_WINDOW_MS, settings.JUNCTION_INGRESS_WINDOW_RUNS = 60_000, 3
    target = instance()
    ids = []
    for n in range(7):
        with django_capture_on_commit_callbacks(execute=True):
            ids += [run.pk for run in post_event(instance=target, event="ping", payload={"n": n})]
    # The first at once; then every third run fills the window and goes with the post that filled it.
    assert [batch for _, batch in published] == [ids[:1], ids[1:4], ids[4:7]]
    assert window.pending() == []


@pytest.mark.django_db
@pytest.mark.parametrize(("window_ms", "window_runs"), [(0, 16), (50, 1), (50, 0)])
def test_with_the_window_off_every_post_sends_its_runs_before_it_returns(window, published, settings, window_ms,
                                                                         window_runs,
                                                                         django_capture_on_commit_callbacks):
    settings.JUNCTION_INGRESS_WINDOW_MS, settings.JUNCTION_INGRESS_WINDOW_RUNS = window_ms, window_runs
    target = instance()
    ids = []
    for n in range(5):
        with django_capture_on_commit_callbacks(execute=True):
            ids += [run.pk for run in post_event(instance=target, event="ping", payload={"n": n})]
        assert published[-1] == ("runtime.tasks.run_handler_task", [ids[-1]])
    assert len(published) == 5
    assert window.pending() == []
    assert window._flusher is None  # no thread started


def test_the_window_is_off_when_tasks_run_eagerly(settings):
    settings.JUNCTION_INGRESS_WINDOW_MS, settings.JUNCTION_INGRESS_WINDOW_RUNS = 50, 16
    assert ingress.window_on()
    app.conf.task_always_eager = True
    try:
        assert not ingress.window_on()
    finally:
        app.conf.task_always_eager = False


@pytest.mark.django_db
def test_a_run_whose_window_was_never_sent_is_sent_again_by_housekeeping(window, published, settings,
                                                                        django_capture_on_commit_callbacks):
    settings.JUNCTION_INGRESS_WINDOW_MS = 60_000
    target = instance()
    with django_capture_on_commit_callbacks(execute=True):
        (sent,) = post_event(instance=target, event="ping", payload={"n": 1})
    with django_capture_on_commit_callbacks(execute=True):
        (waiting,) = post_event(instance=target, event="ping", payload={"n": 2})
    published.execute()
    assert window.pending() == [waiting.pk]
    window._forget()  # the process died before the window closed: the id is gone with it

    waiting.refresh_from_db()
    assert (waiting.status, waiting.starts) == (RunStatus.QUEUED, 0)
    assert runs.requeue_stranded_runs() == 0  # too recent: its message may still be on its way
    later = timezone.now() + timedelta(seconds=settings.JUNCTION_REQUEUE_AFTER_SECONDS + 1)
    assert runs.requeue_stranded_runs(now=later) == 1
    assert published[-1] == ("runtime.tasks.run_handler_task", [waiting.pk])
    Published(published[-1:]).execute()
    waiting.refresh_from_db()
    assert (waiting.status, waiting.result) == (RunStatus.SUCCEEDED, {"n": 2})
    sent.refresh_from_db()
    assert sent.starts == 1  # the run that was sent ran once


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_an_empty_window_and_a_lock_of_its_own(window, published, settings):
    settings.JUNCTION_INGRESS_WINDOW_MS = 60_000
    ingress.send(NO_SUCH_RUNS[:1])  # sent at once
    ingress.send(NO_SUCH_RUNS[1:])  # waits
    assert window.pending() == NO_SUCH_RUNS[1:]
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with window._lock:  # a poster thread in the middle of add() when the process forks
            held.set()
            release.wait(TIMEOUT)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(TIMEOUT)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: must neither hang on the parent's lock nor send the parent's runs
        try:
            before = len(published)
            pending = ingress.window.pending()
            ingress.window.flush()
            os.write(write, json.dumps({"pending": pending, "sent": len(published) - before}).encode())
        finally:
            os._exit(0)
    os.close(write)
    release.set()
    holder.join()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung on the window's lock")
    with os.fdopen(read) as pipe:
        assert json.loads(pipe.read()) == {"pending": [], "sent": 0}
    assert window.pending() == NO_SUCH_RUNS[1:]  # still the parent's to send
    window._forget()


def test_runs_waiting_at_a_normal_exit_are_sent(tmp_path):
    script = tmp_path / "poster.py"
    script.write_text(
        "import django, json, sys\n"
        "django.setup()\n"
        "from celery.signals import after_task_publish\n"
        "from runtime import ingress\n"
        "after_task_publish.connect(lambda body=None, **_: print(json.dumps(body[0][0]), flush=True), weak=False)\n"
        f"ingress.send({NO_SUCH_RUNS[:1]!r})\n"
        f"ingress.send({NO_SUCH_RUNS[1:]!r})\n"
        "print('exiting', json.dumps(ingress.window.pending()), flush=True)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "marketplace.settings", "JUNCTION_INGRESS_WINDOW_MS": "60000",
           "PYTHONPATH": str(Path(settings.BASE_DIR))}
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60,
                          cwd=settings.BASE_DIR)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        json.dumps(NO_SUCH_RUNS[0]), f"exiting {json.dumps(NO_SUCH_RUNS[1:])}", json.dumps(NO_SUCH_RUNS[1:]),
    ]


@pytest.mark.django_db
def test_the_webhook_answers_as_before_while_its_runs_wait_in_the_window(window, published, settings, client,
                                                                         django_capture_on_commit_callbacks):
    settings.JUNCTION_INGRESS_WINDOW_MS = 60_000
    target = instance()
    answers = []
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            answers.append(client.post(f"/hooks/{target.webhook_token}/ping", data={"n": n},
                                       content_type="application/json"))
    assert [answer.status_code for answer in answers] == [202] * 3
    ids = [answer.json()["runs"][0] for answer in answers]
    assert [answer.json() for answer in answers] == [{"event": "ping", "runs": [run_id]} for run_id in ids]
    assert published.run_ids() == ids[:1] and window.pending() == ids[1:]
    assert set(HandlerRun.objects.filter(pk__in=ids).values_list("status", flat=True)) == {RunStatus.QUEUED}
