"""The ingress window: runs of events posted one at a time (the webhook, callback URLs, ``post_event``)
travel in batches, as a dispatcher tick's runs do.

A message costs a worker's parent process more than a trivial run costs its pool process,
so one run per message caps a worker at about a third of Celery's no-op rate
(docs/running.md, "Events posted one by one"). Each process that posts events keeps one
window:

- the first run after a quiet spell is sent at once, so light traffic waits for nothing;
- runs posted in the JUNCTION_INGRESS_WINDOW_MS that follow a send gather, and go in one
  message when the window closes (a flusher thread sends them) or as soon as it holds
  JUNCTION_INGRESS_WINDOW_RUNS runs (the posting thread sends them);
- the window is off (every run sent at once, as before) when either setting is 0 or 1, or
  when tasks run eagerly.

A run waiting in a window is a committed row, ``queued``: nothing is lost if the process
dies before sending it. Housekeeping's ``runs.requeue_stranded_runs`` sends every run still
queued and never picked up JUNCTION_REQUEUE_AFTER_SECONDS after it was created. A normal exit
(a gunicorn worker recycled or stopped) sends what is waiting (``atexit``); a forked child
starts with an empty window and a fresh lock (its parent sends what was waiting).
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from django.conf import settings

from marketplace.celery import app

from .messages import publish_runs

log = logging.getLogger(__name__)


def window_on() -> bool:
    """Whether runs gather (the settings allow a window and tasks are really sent)."""
    return (settings.JUNCTION_INGRESS_WINDOW_MS > 0 and settings.JUNCTION_INGRESS_WINDOW_RUNS > 1
            and not app.conf.task_always_eager)


def send(run_ids: list[int]) -> None:
    """Send committed queued runs through this process's window (at once if it is off)."""
    if not run_ids:
        return
    if not window_on():
        publish_runs(run_ids)
        return
    window.add(run_ids)


class Window:
    """The runs of one process waiting to be sent together. Thread-safe: web processes post
    from several threads."""

    def __init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        # Also what a forked child runs: the parent's lock may have been held at the fork
        # by a thread the child does not have, and the parent sends the runs it gathered.
        self._lock = threading.Lock()
        self._due = threading.Condition(self._lock)
        self._pending: list[int] = []
        self._closes_at = float("-inf")  # time.monotonic() at which the open window closes
        self._flusher: threading.Thread | None = None

    def add(self, run_ids: list[int]) -> None:
        seconds = settings.JUNCTION_INGRESS_WINDOW_MS / 1000
        now = time.monotonic()
        with self._lock:
            if not self._pending and now >= self._closes_at:
                batch, self._closes_at = list(run_ids), now + seconds
            else:
                self._pending.extend(run_ids)
                if len(self._pending) >= settings.JUNCTION_INGRESS_WINDOW_RUNS:
                    batch, self._pending, self._closes_at = self._pending, [], now + seconds
                else:
                    batch = []
                    self._start_flusher()
                    self._due.notify()
        if batch:
            _send(batch)

    def pending(self) -> list[int]:
        with self._lock:
            return list(self._pending)

    def flush(self) -> None:
        """Send what is waiting now (at exit)."""
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            _send(batch)

    def _start_flusher(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._send_when_due, name="ingress-window", daemon=True)
            self._flusher.start()

    def _send_when_due(self) -> None:
        lock, due = self._lock, self._due
        with lock:
            while self._lock is lock:  # a forgotten window has a new lock, and its own flusher
                if not self._pending:
                    due.wait(1.0)
                    continue
                left = self._closes_at - time.monotonic()
                if left > 0:
                    due.wait(left)
                    continue
                batch, self._pending = self._pending, []
                self._closes_at = time.monotonic() + settings.JUNCTION_INGRESS_WINDOW_MS / 1000
                lock.release()
                try:
                    _send(batch)
                finally:
                    lock.acquire()


def _send(batch: list[int]) -> None:
    # One message per window (spread=1): gathering them is the point. A failure cannot
    # reach the poster, whose 202 is already true (the runs are queued): housekeeping
    # re-sends them.
    try:
        publish_runs(batch, spread=1)
    except Exception:
        log.exception("could not send runs %s; housekeeping re-sends queued runs whose message was lost", batch)


window = Window()


def _forget_in_child() -> None:
    window._forget()


def _flush_at_exit() -> None:
    window.flush()


os.register_at_fork(after_in_child=_forget_in_child)
atexit.register(_flush_at_exit)
