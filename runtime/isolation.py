"""Running the sandbox in a forked child process that is killed at the run's limit plus a margin.

The sandbox enforces its limits from a count hook between Lua instructions and around ctx
calls; code that loops inside one C function never reaches the hook. In a Celery worker the
per-run watchdog (``runtime.watchdog``) and, behind it, the task's hard time limit stop such
a run by ending the pool process; a web or command process cannot be ended like that, so a
run executed on its behalf runs here instead (``run_isolated``, the same contract as
``sandbox.run_lua``):

- The parent forks. The child runs ``run_lua`` with a proxy host: every ctx call and every
  bundle file lookup goes over a socket pair to the parent, which performs it with the real
  host (its own database connection and transaction, so runs inside a test transaction or
  on in-memory SQLite behave as in-process) and sends the answer back. Values cross as JSON:
  they are plain data on both sides. The child never touches the database, the network or
  Django; the ctx's logs are kept by the parent's host, as in-process.
- The parent stops waiting at ``timeout_ms + JUNCTION_RUNTIME_KILL_MARGIN_MS`` after the
  start, kills the child (SIGKILL) and returns a ``timeout`` result saying the platform's
  backstop stopped the run. The child also carries an ``RLIMIT_CPU`` of the same length
  (rounded up), should the parent itself be stuck.
- The child answers with the ``RunResult`` as a dict and ends with ``os._exit``: no atexit
  handlers, no flush of stdio buffers inherited from the parent. Its log records go to the
  parent, which emits them (no handler of the parent's, network or file, runs in the child).

A ctx call performed by the parent is bounded by the run's deadline like in-process (HTTP
and SQL clients get it as their timeout); the kill is checked again when it returns.
"""
from __future__ import annotations

import gc
import json
import logging
import math
import os
import resource
import select
import signal
import socket
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from django.conf import settings

from .limits import Limits
from .outcomes import Host, HostError, RunResult, RunStopped, SandboxError
from .sandbox import run_lua

logger = logging.getLogger(__name__)

# A frame bigger than this is not a ctx call's arguments nor a result within any limit.
MAX_FRAME_BYTES = 256 * 1024 * 1024
_HEADER = struct.Struct("!I")
# Signals whose handlers in the parent (web server, worker, command) must not run in the child.
_RESET_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD", "SIGALRM")


def kill_margin_ms() -> int:
    return int(settings.JUNCTION_RUNTIME_KILL_MARGIN_MS)


class _ChildGone(Exception):
    """The other end closed the socket (the child exited or was killed)."""


class _Channel:
    """Length-prefixed JSON frames over one end of a socket pair."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @staticmethod
    def encode(message: Any) -> bytes:
        """A frame; anything not JSON becomes its string form, as ``sandbox.to_lua`` does."""
        payload = json.dumps(message, separators=(",", ":"), default=str).encode()
        return _HEADER.pack(len(payload)) + payload

    def send(self, message: Any) -> None:
        self.sock.sendall(self.encode(message))

    def receive(self, until: float | None = None) -> Any:
        """The next message; None once ``until`` (a monotonic time) has passed."""
        header = self._read(_HEADER.size, until)
        if header is None:
            return None
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME_BYTES:
            raise _ChildGone(f"a frame of {size} bytes")
        payload = self._read(size, until)
        return None if payload is None else json.loads(payload)

    def _read(self, size: int, until: float | None) -> bytes | None:
        chunks, missing = [], size
        poller = None
        while missing:
            if until is not None:
                if poller is None:  # poll, not select: a web process may hold more than 1024 fds
                    poller = select.poll()
                    poller.register(self.sock, select.POLLIN)
                left = until - time.monotonic()
                if left <= 0 or not poller.poll(math.ceil(left * 1000)):
                    return None
            chunk = self.sock.recv(min(missing, 1 << 20))
            if not chunk:
                raise _ChildGone("end of stream")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)


# --- the child -------------------------------------------------------------------------

class _ProxyHost:
    """The child's host: every ctx call is asked of the parent. Errors come back as the
    same exceptions the real host raises, so ``run_lua`` handles them unchanged."""

    def __init__(self, channel: _Channel, host: Host):
        self._channel = channel
        self.logs: list = []  # the real logs are kept by the parent's host
        self.config = host.config
        self.instance_info = host.instance_info

    def call(self, name: str, args: list, deadline: float) -> Any:
        self._channel.send(["call", name, args, deadline])
        reply = self._channel.receive()
        kind = reply[0]
        if kind == "ok":
            return reply[1]
        if kind == "error":
            raise (RunStopped if reply[3] else HostError)(reply[1], reply[2])
        if kind == "invalid":
            raise ValueError(reply[1])
        raise HostError("internal_error", f"{name} failed on the platform's side")

    def source(self, path: str) -> str | None:
        self._channel.send(["source", path])
        return self._channel.receive()[1]


class _ToParent(logging.Handler):
    def __init__(self, channel: _Channel):
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.channel.send(["log", record.levelno, record.name, message])
        except Exception:
            pass  # a record the parent cannot get must not end the run


def _cpu_seconds(wall_seconds: float) -> int:
    return max(1, math.ceil(wall_seconds))


def _child(sock: socket.socket, *, source_file: str, function: str, input: Any, host: Host, limits: Limits,
           cpu_seconds: int) -> None:
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard == resource.RLIM_INFINITY or hard > cpu_seconds:
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1 if hard == resource.RLIM_INFINITY
                                                 else min(hard, cpu_seconds + 1)))
    channel = _Channel(sock)
    # Every logger's handlers belong to the parent (streams with buffers, files, network).
    forward = _ToParent(channel)
    for existing in [logging.root, *logging.root.manager.loggerDict.values()]:
        if isinstance(existing, logging.Logger):
            existing.handlers = []
            existing.propagate = True
    logging.root.handlers = [forward]
    proxy = _ProxyHost(channel, host)
    outcome = run_lua(source=proxy.source, file=source_file, function=function, input=input, host=proxy,
                      limits=limits)
    channel.send(["done", {
        "status": outcome.status,
        "result": outcome.result,
        "error": outcome.error.as_dict() if outcome.error else None,
        "duration_ms": outcome.duration_ms,
        "phases": outcome.phases,
    }])


# --- the parent ------------------------------------------------------------------------

def run_isolated(
    *,
    source: Callable[[str], str | None] | Mapping[str, str],
    file: str,
    function: str,
    input: Any,
    host: Host,
    limits: Limits,
    margin_ms: int | None = None,
) -> RunResult:
    """``sandbox.run_lua`` in a forked child, killed at ``limits.timeout_ms`` plus
    ``margin_ms`` (JUNCTION_RUNTIME_KILL_MARGIN_MS). Never raises for anything the handler
    does; a run stopped by the kill fails with ``timeout``, a child that died otherwise with
    ``internal_error`` (logged). ``host.call`` and ``source`` run in this process only; the
    child reads ``host.config`` and ``host.instance_info`` from its copy of the memory.

    Several threads may call this at once (a threaded web server): each run has its own
    child and socket pair."""
    margin_ms = kill_margin_ms() if margin_ms is None else margin_ms
    get_source = source.get if isinstance(source, Mapping) else source
    started = time.monotonic()
    kill_at = started + (limits.timeout_ms + margin_ms) / 1000
    cpu_seconds = _cpu_seconds((limits.timeout_ms + margin_ms) / 1000)
    ours, theirs = socket.socketpair()
    # Frozen objects are never collected in the child: no finalizer of the parent's (a
    # database connection, a socket) can run there.
    gc.freeze()
    try:
        pid = os.fork()
    except OSError:
        gc.unfreeze()
        ours.close()
        theirs.close()
        raise
    if pid == 0:  # the child: whatever happens, it leaves through os._exit
        status = 1
        try:
            ours.close()
            _child(theirs, source_file=file, function=function, input=input, host=host, limits=limits,
                   cpu_seconds=cpu_seconds)
            status = 0
        except BaseException:
            logger.exception("an isolated run failed in its child process")
        finally:
            os._exit(status)
    gc.unfreeze()
    theirs.close()
    child = _Child(pid)
    try:
        return _serve(_Channel(ours), child, host=host, get_source=get_source, started=started,
                      kill_at=kill_at, limits=limits)
    finally:
        ours.close()
        child.kill()  # done or not, nothing more is wanted from it (and a zombie ignores it)
        child.wait()


class _Child:
    def __init__(self, pid: int):
        self.pid = pid
        self.status: int | None = None
        self.reaped = False

    def kill(self) -> None:
        if not self.reaped:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int | None:
        """The child's wait status (waiting for it once; no zombie is left), or None when
        something else reaped it (e.g. SIGCHLD set to ignore children)."""
        while not self.reaped:
            try:
                self.status = os.waitpid(self.pid, 0)[1]
            except ChildProcessError:
                pass
            except InterruptedError:
                continue
            self.reaped = True
        return self.status

    def killed_for_time(self) -> bool:
        status = self.wait()
        return status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) in (
            signal.SIGXCPU, signal.SIGKILL)


def _serve(channel: _Channel, child: _Child, *, host: Host, get_source, started: float, kill_at: float,
           limits: Limits) -> RunResult:
    """Answer the child's requests until it sends its result, dies, or its time is up."""
    while True:
        try:
            message = channel.receive(until=kill_at)
        except (_ChildGone, OSError, ValueError) as exc:
            return _died(child, started, host, limits, reason=str(exc))
        if message is None:
            child.kill()
            return _backstop_timeout(started, host, limits)
        kind = message[0] if isinstance(message, list) and message else None
        if kind == "call":
            reply = _perform(host, message)
        elif kind == "source":
            reply = ["ok", _lookup(get_source, message[1])]
        elif kind == "log":
            _emit(message)
            continue
        elif kind == "done":
            return _outcome(message[1], host)
        else:
            child.kill()
            return _fault(started, host, reason=f"an unexpected message {kind!r}")
        if time.monotonic() >= kill_at:  # the ctx call itself took the run past its kill
            child.kill()
            return _backstop_timeout(started, host, limits)
        try:
            frame = channel.encode(reply)
        except (ValueError, TypeError, RecursionError) as exc:  # not plain data: as to_lua refuses it
            frame = channel.encode(["invalid", str(exc)[:200]])
        try:
            channel.sock.sendall(frame)
        except OSError as exc:
            return _died(child, started, host, limits, reason=str(exc))


def _perform(host: Host, message: list) -> list:
    _, name, args, deadline = message
    try:
        return ["ok", host.call(name, args, deadline)]
    except RunStopped as exc:
        return ["error", exc.code, exc.message, True]
    except HostError as exc:
        return ["error", exc.code, exc.message, False]
    except (ValueError, RecursionError) as exc:
        return ["invalid", str(exc)]
    except Exception as exc:
        if exc.__class__.__name__ == "SoftTimeLimitExceeded":
            raise
        logger.exception("ctx call %s failed", name)
        return ["fault"]


def _lookup(get_source, path: Any) -> str | None:
    if not isinstance(path, str):
        return None
    try:
        text = get_source(path)
    except Exception:
        logger.exception("bundle file %r could not be read", path)
        return None
    return text if isinstance(text, str) else None


def _emit(message: list) -> None:
    try:
        _, level, name, text = message
        logging.getLogger(str(name)).log(int(level), "%s (in an isolated run)", text)
    except (TypeError, ValueError):
        pass


def _outcome(data: dict, host: Host) -> RunResult:
    error = data.get("error")
    return RunResult(
        status=data["status"],
        result=data.get("result"),
        error=SandboxError(**error) if error else None,
        logs=list(host.logs),
        duration_ms=data.get("duration_ms") or 0,
        phases=data.get("phases") or {},
    )


def _elapsed_ms(started: float) -> int:
    return int(math.ceil((time.monotonic() - started) * 1000))


def _backstop_timeout(started: float, host: Host, limits: Limits) -> RunResult:
    elapsed = _elapsed_ms(started)
    return RunResult(
        status="failed",
        error=SandboxError("timeout", (
            f"the run was stopped by the platform's backstop after {elapsed} ms (its limit is "
            f"{limits.timeout_ms} ms): it was stuck where the sandbox could not interrupt it"
        )),
        logs=list(host.logs),
        duration_ms=elapsed,
    )


def _died(child: _Child, started: float, host: Host, limits: Limits, *, reason: str) -> RunResult:
    """The child ended without a result: killed for its CPU time (a timeout, like the
    kill) or lost for another reason (a platform fault)."""
    if child.killed_for_time():
        return _backstop_timeout(started, host, limits)
    return _fault(started, host, reason=f"{reason}; wait status {child.status}")


def _fault(started: float, host: Host, *, reason: str) -> RunResult:
    logger.error("an isolated run ended without a result (%s)", reason)
    return RunResult(
        status="failed",
        error=SandboxError("internal_error", "the run failed on the platform's side"),
        logs=list(host.logs),
        duration_ms=_elapsed_ms(started),
    )
