"""The worker's per-run watchdog: a run stuck where neither the sandbox's hook nor Celery's
soft limit reach it (inside one C function, a ctx call that never returns) is stopped at its
own ``timeoutMs`` plus JUNCTION_RUNTIME_KILL_MARGIN_MS, not at the task's hard time limit.

Each prefork pool process gets one ``Watchdog`` (``install``, from the worker's
``worker_process_init`` signal in ``runtime.tasks``): a daemon thread that sleeps until the
kill time of the run being executed. lupa releases the GIL while Lua runs, and a ctx call
blocked on I/O releases it too, so the thread wakes on time whatever the run is doing.
When the run is still armed at its kill time, the thread

1. records the run as failed ``timeout`` from a thread of its own, with its own database
   connection, by one UPDATE conditional on the run's id, ``starts`` and ``status=running``
   (an outcome already recorded, or a later pickup of the run, is never overwritten); it
   waits for that at most ``RECORD_SECONDS`` (a locked SQLite file, a PostgreSQL that does
   not answer) and kills the process anyway;
2. SIGKILLs its own process. Celery (``acks_late`` + ``reject_on_worker_lost``) replaces the
   pool process and gives the message back; the redelivered run is found finished and only
   followed up (a declared ``retry`` applies), the other runs of a batch go on.

Whatever the main thread held dies with the process: PostgreSQL rolls back an open
transaction of a connection that goes away, SQLite's file locks are released by the OS.

Only code that holds the GIL while stuck (Python's ``re`` on a pathological pattern) keeps
the thread from running; the task's hard time limit, enforced by the worker's main process,
remains the last line for that.

Runs are watched only in the task path (``runtime.tasks`` marks it with ``on_duty``) of a
process where a watchdog is installed: never in the web process, in an isolated run's child
(which has its own kill, ``runtime.isolation``) or in a test's in-process run unless the
test installs one.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from django.db import connections
from django.utils import timezone

from marketplace.choices import RunStatus
from marketplace.models import HandlerRun

from . import postgres
from .isolation import kill_margin_ms

logger = logging.getLogger(__name__)

# How long the watchdog waits for its record before it kills the process anyway; also the
# SQLite busy timeout of that write (the settings' 20 s would hold a stuck run that long).
RECORD_SECONDS = 5.0


class Killed(Exception):
    """Raised when the run's thread leaves a watch the watchdog fired on. In a worker the
    process is dead before that; only a watchdog whose kill returns (tests) gets here."""


class Watch:
    """One armed run: what the watchdog records, and when it fires. Leaving it as a
    context manager disarms it."""

    __slots__ = ("watchdog", "run_id", "starts", "timeout_ms", "started", "kill_at", "logs")

    def __init__(self, watchdog: Watchdog, run_id: int, starts: int, timeout_ms: int, started: float,
                 kill_at: float):
        self.watchdog = watchdog
        self.run_id, self.starts, self.timeout_ms = run_id, starts, timeout_ms
        self.started, self.kill_at = started, kill_at
        self.logs: list = []

    def attach_logs(self, ctx) -> None:
        """Keep the run's ctx logs: a stopped run is recorded with the lines it wrote."""
        self.logs = ctx.logs

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.watchdog.disarm(self)


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Watchdog:
    """A daemon thread watching at most one run at a time (a pool process runs one task at
    a time). ``arm``/``disarm`` are called by the run's thread; the hot path takes one
    uncontended lock and wakes the thread only when it must wake earlier than it planned."""

    def __init__(self, *, kill: Callable[[], None] = _kill_self, record_seconds: float = RECORD_SECONDS):
        self._kill = kill
        self.record_seconds = record_seconds
        self._cond = threading.Condition(threading.Lock())
        self._watch: Watch | None = None
        self._firing: Watch | None = None
        self._wake_at: float | None = None  # when the thread will look next (None: when notified)
        self._stopped = False
        self._fired = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="junction-run-watchdog", daemon=True)
        self._thread.start()

    # --- the run's thread ------------------------------------------------------------------

    def arm(self, *, run_id: int, starts: int, timeout_ms: int, margin_ms: int | None = None) -> Watch:
        started = time.monotonic()
        margin_ms = kill_margin_ms() if margin_ms is None else margin_ms
        watch = Watch(self, run_id, starts, timeout_ms, started, started + (timeout_ms + margin_ms) / 1000)
        with self._cond:
            self._watch = watch
            if self._wake_at is None or watch.kill_at < self._wake_at:
                self._cond.notify()
        return watch

    def disarm(self, watch: Watch) -> None:
        """The run is done with the sandbox (safe to call twice). Raises ``Killed`` if the
        watchdog fired on it (once its kill returned; a real kill never does)."""
        with self._cond:
            firing = self._firing is watch
            if self._watch is watch:
                self._watch = None
        if firing:
            self._fired.wait()
            raise Killed(f"the watchdog stopped run {watch.run_id}")

    def watching(self, **arm) -> Watch:
        """``arm``, as a context manager that disarms on leaving."""
        return self.arm(**arm)

    def stop(self) -> None:
        """End the thread (tests; a worker's pool process just exits)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()

    # --- the watchdog's thread -------------------------------------------------------------

    def _loop(self) -> None:
        with self._cond:
            while not self._stopped:
                watch, now = self._watch, time.monotonic()
                if watch is None:
                    self._wake_at = None
                    self._cond.wait()
                elif now < watch.kill_at:
                    self._wake_at = watch.kill_at
                    self._cond.wait(watch.kill_at - now)
                else:
                    self._firing = watch  # from here on disarm() waits for the kill
                    break
            else:
                return
        self._fire(watch)

    def _fire(self, watch: Watch) -> None:
        elapsed_ms = int(math.ceil((time.monotonic() - watch.started) * 1000))
        recorder = threading.Thread(target=self._record, args=(watch, elapsed_ms),
                                    name="junction-run-watchdog-record", daemon=True)
        recorder.start()
        recorder.join(self.record_seconds)
        try:
            self._kill()
        finally:
            self._fired.set()

    def _record(self, watch: Watch, elapsed_ms: int) -> None:
        """The conditional UPDATE, on this thread's own connection (closed afterwards). Logged
        from here too: a logging handler the stuck thread holds must not delay the kill."""
        try:
            logger.error("run %s is %d ms into its %d ms limit, stuck where the sandbox cannot interrupt it: "
                         "ending this worker process (pid %d)", watch.run_id, elapsed_ms, watch.timeout_ms,
                         os.getpid())
            connection = connections["default"]
            postgres.wait_for_locks(connection, self.record_seconds)
            recorded = HandlerRun.objects.filter(
                pk=watch.run_id, starts=watch.starts, status=RunStatus.RUNNING
            ).update(
                status=RunStatus.FAILED, error_code="timeout", result=None, logs=list(watch.logs),
                error_message=(
                    f"the run was stopped by the platform's backstop after {elapsed_ms} ms (its limit is "
                    f"{watch.timeout_ms} ms): it was stuck where the sandbox could not interrupt it"
                ),
                error_file="", error_line=None, finished_at=timezone.now(), duration_ms=elapsed_ms,
            )
            if not recorded:
                logger.warning("run %s was no longer running when the watchdog fired", watch.run_id)
        except Exception:  # the process is killed anyway; the redelivered message runs it again
            logger.exception("the watchdog could not record run %s", watch.run_id)
        finally:
            connections.close_all()


# --- the process's watchdog and the task path's duty ---------------------------------------

_installed: Watchdog | None = None
_duty = threading.local()


def install(watchdog: Watchdog | None = None) -> Watchdog | None:
    """Make ``watchdog`` (a new one by default) this process's; returns the previous one.
    ``install(None)`` in a pool process; tests pass one whose kill only records the call."""
    global _installed
    previous, _installed = _installed, watchdog if watchdog is not None else Watchdog()
    return previous


def uninstall() -> Watchdog | None:
    global _installed
    previous, _installed = _installed, None
    return previous


@contextlib.contextmanager
def on_duty() -> Iterator[None]:
    """Runs executed by this thread inside the block are watched (``watching``)."""
    before = getattr(_duty, "on", False)
    _duty.on = True
    try:
        yield
    finally:
        _duty.on = before


def watching(*, run_id: int, starts: int, timeout_ms: int):
    """A context manager watching one run's sandbox (yielding its ``Watch``) when this
    process has a watchdog and the thread is on duty; otherwise one that does nothing
    (yielding None)."""
    if _installed is None or not getattr(_duty, "on", False):
        return contextlib.nullcontext()
    return _installed.watching(run_id=run_id, starts=starts, timeout_ms=timeout_ms)
