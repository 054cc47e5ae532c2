"""The embedded default's Celery broker: kombu's filesystem transport, made safe for a web
process, a worker and beat sharing one folder (``CELERY_BROKER_TRANSPORT`` in settings;
docs/embedded.md).

kombu's own filesystem transport (5.7) has three faults that stop ``make run``:

- its writer creates the message file under its final name and then writes into it, and
  its reader takes the file without waiting: a worker that reads a message half-written
  fails to parse it and dies (celery/kombu#1551);
- a message a worker has taken lives only in that worker's memory until it is acked: if the
  worker process dies, the message is gone;
- a message given back (a killed pool child's ``reject(requeue=True)``, the restore at
  shutdown) is marked redelivered where no consumer looks, so Celery reports a first
  delivery and the run is skipped as a duplicate of itself.

This transport keeps kombu's layout (one file per message, ``<stamp>_<id>.<queue>.msg`` in
the queue folder, exchange tables in the control folder) and changes how files move:

- **Atomic writes.** A message is written to a hidden temporary file in the queue folder
  and renamed into place (``os.replace``, atomic within one filesystem): a reader sees a
  whole message or none. Exchange tables are rewritten the same way.
- **Claims on disk.** A consumer takes a message by renaming it into a folder of its own
  under ``unacked/`` (of two consumers renaming one file, exactly one succeeds) and deletes
  it when the message is acked. While a consumer lives it holds an exclusive ``flock`` on
  ``unacked/<owner>.lock``; the kernel drops the lock when the process and the pool
  children it forked are gone. Every consumer checks the others' locks now and then (and
  at start-up): a lock it can take belongs to a consumer that died, whose messages it puts
  back in the queue marked redelivered.
- **Redelivered means redelivered.** A message given back carries
  ``delivery_info["redelivered"] = True``, which is what Celery hands the task
  (``runtime.tasks._redelivered``), so the run it carries is taken up again.
- **Quarantine.** A file that is not a readable message is moved to ``quarantine/`` and
  logged; the consumer goes on with the next one.

POSIX only (``fcntl.flock``), like the rest of the embedded default.
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import time
import uuid
from collections import deque
from pathlib import Path
from queue import Empty

from kombu.exceptions import ChannelError
from kombu.transport import filesystem, virtual
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

# Messages handed to the worker per poll of the event loop at most (it polls every polling_interval).
DELIVERIES_PER_POLL = 100
# A temporary file older than this was left by a writer that died mid-write.
STALE_TEMP_SECONDS = 3600


class Channel(filesystem.Channel):
    """One consumer or producer of the embedded broker. Options (transport_options):
    ``data_folder_in``/``data_folder_out`` (the queue folder; the same folder for the
    embedded default), ``control_folder``, ``unacked_folder``, ``quarantine_folder`` (on the
    queue folder's filesystem; default: siblings of it), ``recover_interval`` (seconds
    between checks for dead consumers) and ``fsync`` (flush each message to disk before it
    is visible)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._claimed: dict[str, Path] = {}  # delivery tag → the file this channel took
        self._no_ack_queues: set[str] = set()
        self._pending: dict[str, deque[str]] = {}  # queue → names listed, not yet tried
        self._owner: tuple[str, Path, int] | None = None  # (id, folder, locked fd)
        self._next_recovery = 0.0
        # Read once: the connection (and with it the options) is gone by the time close() ends.
        options = self.transport_options
        self.queue_folder = Path(self.data_folder_in)
        self.out_folder = Path(self.data_folder_out)
        self.unacked_folder = Path(options.get("unacked_folder") or self.queue_folder.parent / "unacked")
        self.quarantine_folder = Path(options.get("quarantine_folder") or self.queue_folder.parent / "quarantine")
        self.recover_interval = float(options.get("recover_interval", 10))
        self.fsync = bool(options.get("fsync", False))
        for folder in (self.queue_folder, self.out_folder, self.control_folder, self.unacked_folder,
                       self.quarantine_folder):
            folder.mkdir(parents=True, exist_ok=True)

    # --- Writing --------------------------------------------------------------------------

    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` on ``queue``: written aside, then renamed into the queue folder."""
        if not queue or os.sep in queue or "\0" in queue:
            raise ChannelError(f"Invalid queue name: {queue!r}")
        # Wall-clock nanoseconds, zero-padded: names sort in sending order, across restarts too.
        name = f"{time.time_ns():020d}_{uuid.uuid4().hex}.{queue}.msg"
        self._write_atomic(self.out_folder / name, str_to_bytes(dumps(payload)))

    def _write_atomic(self, path: Path, data: bytes) -> None:
        # Hidden and without the ".<queue>.msg" ending: no reader takes the file while it grows.
        temp = path.parent / f".{uuid.uuid4().hex}.tmp"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temp, path)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add file {str(path)!r} to the broker folder: {exc}") from exc

    # --- Reading --------------------------------------------------------------------------

    def _get(self, queue):
        """The oldest readable message of ``queue``, now claimed by this channel."""
        if time.monotonic() >= self._next_recovery:
            self.recover_dead_consumers()
        pending = self._pending.get(queue)
        if not pending:
            pending = self._pending[queue] = deque(self._listing(queue))
        while pending:
            name = pending.popleft()
            claimed = self._claim(name)
            if claimed is None:
                continue  # another consumer took it first
            payload = self._read(claimed)
            if payload is None:
                continue  # quarantined
            tag = payload["properties"]["delivery_tag"]
            if queue in self._no_ack_queues:
                claimed.unlink(missing_ok=True)
            else:
                self._claimed[tag] = claimed
            return payload
        raise Empty()

    def _listing(self, queue: str) -> list[str]:
        # Listed once and worked through before listing again: a backlog costs one scan, not one per message.
        wanted = f"{queue}.msg"
        try:
            names = os.listdir(self.queue_folder)
        except OSError as exc:
            raise ChannelError(f"Cannot list the broker folder {str(self.queue_folder)!r}: {exc}") from exc
        return sorted(name for name in names if not name.startswith(".") and name.partition(".")[2] == wanted)

    def _claim(self, name: str) -> Path | None:
        target = self._owner_folder() / name
        try:
            os.rename(self.queue_folder / name, target)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("broker: cannot take message %s: %s", name, exc)
            return None
        return target

    def _read(self, path: Path) -> dict | None:
        """The message in ``path``, or None once it has been moved to quarantine."""
        try:
            payload = loads(bytes_to_str(path.read_bytes()))
            if not isinstance(payload["properties"]["delivery_tag"], str):
                raise ValueError("the delivery tag is not a string")
        except Exception as exc:  # whatever is wrong with the file, the consumer goes on
            self._quarantine(path, exc)
            return None
        return payload

    def _quarantine(self, path: Path, reason: Exception) -> None:
        target = self.quarantine_folder / path.name
        try:
            os.replace(path, target)
        except OSError as exc:
            log.error("broker: unreadable message %s (%s) could not be quarantined, deleting it: %s",
                      path, reason, exc)
            path.unlink(missing_ok=True)
            return
        log.error("broker: unreadable message moved to %s: %s: %s", target, type(reason).__name__, reason)

    # --- Acks and redelivery --------------------------------------------------------------

    def basic_consume(self, queue, no_ack, *args, **kwargs):
        # Messages of a no-ack consumer (e.g. remote control) are never acked: drop their files on delivery.
        if no_ack:
            self._no_ack_queues.add(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def basic_get(self, queue, no_ack=False, **kwargs):
        message = super().basic_get(queue, no_ack=no_ack, **kwargs)
        if message is not None and no_ack:
            self._forget(message.delivery_tag)
        return message

    def basic_ack(self, delivery_tag, multiple=False):
        super().basic_ack(delivery_tag, multiple)
        self._forget(delivery_tag)

    def _forget(self, delivery_tag) -> None:
        path = self._claimed.pop(delivery_tag, None)
        if path is not None:
            path.unlink(missing_ok=True)

    def _restore(self, message):
        """Give back a message this channel took (a reject with requeue, the restore of
        unacked messages at shutdown), marked redelivered where consumers read it."""
        path = self._claimed.pop(message.delivery_tag, None)
        if path is not None and self._give_back(path):
            return
        payload = message.serializable()
        payload["properties"].setdefault("delivery_info", {})["redelivered"] = True
        info = message.delivery_info or {}
        for queue in self._lookup(info.get("exchange"), info.get("routing_key")):
            self._put(queue, payload)

    def _give_back(self, path: Path) -> bool:
        """Put the claimed message in ``path`` back on its queue, marked redelivered, as a
        new file (so it goes behind the messages waiting: a message that kills its worker
        holds the others up once at most). False if the file was not there."""
        try:
            payload = loads(bytes_to_str(path.read_bytes()))
            payload["properties"].setdefault("delivery_info", {})["redelivered"] = True
        except FileNotFoundError:
            return False
        except Exception as exc:
            self._quarantine(path, exc)
            return True
        self._put(path.name.partition(".")[2][: -len(".msg")], payload)
        path.unlink(missing_ok=True)
        return True

    # --- Owners: which consumer holds which messages ------------------------------------

    def _owner_folder(self) -> Path:
        """This channel's folder under ``unacked/``, made on its first read. The folder
        exists and its lock is held before the lock file appears under the name others
        check, so no one takes a consumer that is starting for a dead one."""
        if self._owner is None:
            owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            folder = self.unacked_folder / owner
            folder.mkdir(parents=True)
            temp = self.unacked_folder / f".{owner}.lock"
            fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(temp, self.unacked_folder / f"{owner}.lock")
            self._owner = (owner, folder, fd)
        return self._owner[1]

    def recover_dead_consumers(self) -> int:
        """Give back the messages of every consumer whose lock can be taken (it died);
        returns how many. Also removes temporary files of writers that died mid-write."""
        self._next_recovery = time.monotonic() + self.recover_interval
        own = self._owner[0] if self._owner else None
        recovered = 0
        try:
            entries = list(os.scandir(self.unacked_folder))
        except OSError as exc:
            log.error("broker: cannot list %s: %s", self.unacked_folder, exc)
            return 0
        for entry in entries:
            if entry.name.endswith(".lock") and not entry.name.startswith(".") and entry.name[:-5] != own:
                recovered += self._recover(entry.name[:-5])
        self._remove_stale_temp_files()
        return recovered

    def _recover(self, owner: str) -> int:
        lock_path = self.unacked_folder / f"{owner}.lock"
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            return 0  # another consumer recovered it just now
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return 0  # alive
                raise
            if not lock_path.exists():
                return 0  # recovered by another consumer between our open and our lock
            folder = self.unacked_folder / owner
            names = sorted(os.listdir(folder)) if folder.is_dir() else []
            given_back = sum(self._give_back(folder / name) for name in names)
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass
            lock_path.unlink(missing_ok=True)
        except OSError as exc:
            log.error("broker: cannot recover the messages of stopped consumer %s: %s", owner, exc)
            return 0
        finally:
            os.close(fd)
        if given_back:
            log.warning("broker: gave back %d unacknowledged message(s) of stopped consumer %s, marked redelivered",
                        given_back, owner)
        return given_back

    def _remove_stale_temp_files(self) -> None:
        limit = time.time() - STALE_TEMP_SECONDS
        for folder in {self.queue_folder, self.out_folder, self.control_folder}:
            try:
                for entry in os.scandir(folder):
                    if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.stat().st_mtime < limit:
                        os.unlink(entry.path)
            except OSError:
                pass  # gone meanwhile, or the next check will try again

    def close(self):
        super().close()  # gives back what this channel holds unacked (virtual.QoS)
        if self._owner is not None:
            owner, folder, fd = self._owner
            self._owner = None
            try:
                folder.rmdir()
                (self.unacked_folder / f"{owner}.lock").unlink(missing_ok=True)
            except OSError:
                pass  # messages left behind: once this process is gone, another consumer gives them back
            os.close(fd)

    # --- Exchange tables ------------------------------------------------------------------

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda table: table if entry in table else [entry, *table])

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        virtual.Channel._delete(self, queue, exchange, routing_key, pattern, *args, **kwargs)
        entry = filesystem.exchange_queue_t(routing_key or "", pattern or "", queue or "")
        self._update_table(exchange, lambda table: [row for row in table if row != entry])

    def _update_table(self, exchange, change) -> None:
        """Read, change and replace an exchange table under a lock of its own: the table
        itself is only ever replaced whole, so ``get_table`` never reads a partial one."""
        file = self._exchange_file(exchange)
        lock_file = file.with_name(f".{file.name}.lock")
        try:
            with open(lock_file, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                table = self.get_table(exchange)
                changed = change(table)
                if changed != table or not file.exists():
                    self._write_atomic(file, str_to_bytes(dumps(changed)))
        except OSError as exc:
            raise ChannelError(f"Cannot update {file}: {exc}") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with ``Channel`` above (``marketplace.broker:Transport``).

    It also tells Celery it can run in the worker's event loop, where it polls the folder on
    a timer: a worker on an asynchronous transport uses the pool that gives each process a
    pipe of its own. On a blocking transport Celery falls back to billiard's classic pool,
    whose processes share one job pipe; once a few of them are killed (memory, hard time
    limit) that pool stops taking jobs and the worker stalls with its prefetched messages
    unacked, on kombu's filesystem transport and on this one alike."""

    Channel = Channel
    implements = filesystem.Transport.implements.extend(asynchronous=True)
    # Shared by every connection in the process, as in kombu's filesystem transport.
    global_state = virtual.BrokerState()
    driver_type = "filesystem"
    driver_name = "junction-filesystem"

    def register_with_event_loop(self, connection, loop):
        loop.call_repeatedly(self.polling_interval, self._deliver_waiting)

    def _deliver_waiting(self) -> None:
        # Each channel delivers while its prefetch allows; a bound keeps one call short.
        for _ in range(DELIVERIES_PER_POLL):
            try:
                self.cycle.get(self._deliver)
            except Empty:
                return

    @property
    def default_connection_params(self):
        # No host to name: kombu's default ("localhost") only makes it warn on every connection.
        return {}
