"""Processes for tests/runtime/test_embedded_broker.py, on the embedded broker in the folder
named by ``EMBEDDED_BROKER_DIR`` (no Django database needed):

- ``app``: a small Celery app whose tasks record how they were delivered (acks_late and
  reject_on_worker_lost, as the runtime's run tasks): ``celery -A tests.runtime.embedded_broker_app worker``;
- ``python -m tests.runtime.embedded_broker_app take QUEUE``: takes one message, prints its
  body and waits without acking (until killed);
- ``python -m tests.runtime.embedded_broker_app send QUEUE COUNT BYTES``: publishes COUNT
  messages with a body of about BYTES bytes each.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from celery import Celery
from kombu import Connection, Exchange, Queue

BROKER_DIR = Path(os.environ.get("EMBEDDED_BROKER_DIR", "/nonexistent"))


def transport_options(broker_dir: Path = BROKER_DIR, **changes) -> dict:
    return {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "control_folder": str(broker_dir / "control"),
        "unacked_folder": str(broker_dir / "unacked"),
        "quarantine_folder": str(broker_dir / "quarantine"),
        "polling_interval": 0.05,
        **changes,
    }


def connection(broker_dir: Path = BROKER_DIR, **changes) -> Connection:
    return Connection("filesystem://", transport="marketplace.broker:Transport",
                      transport_options=transport_options(broker_dir, **changes))


def queue(name: str) -> Queue:
    """A queue as Celery declares one: bound to a direct exchange of the same name."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name)


# Not the current app: the test process imports this module beside Junction's own app.
app = Celery("embedded-broker-test", set_as_current=False)
app.conf.update(
    broker_url="filesystem://",
    broker_transport="marketplace.broker:Transport",
    broker_transport_options=transport_options(recover_interval=1),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)


def _record(folder: str, name: str, request) -> None:
    info = {"redelivered": bool((request.delivery_info or {}).get("redelivered")), "pid": os.getpid()}
    (Path(folder) / name).write_text(json.dumps(info))


@app.task(bind=True, name="embedded.die_once")
def die_once(self, folder: str) -> None:
    """First delivery: the pool process dies (as the memory limit or a crash would kill it).
    Second: records how it was delivered."""
    if not (Path(folder) / "first.json").exists():
        _record(folder, "first.json", self.request)
        os.kill(os.getpid(), signal.SIGKILL)
    _record(folder, "second.json", self.request)


@app.task(bind=True, name="embedded.hang_once")
def hang_once(self, folder: str) -> None:
    """First delivery: records it and hangs (the test kills the whole worker). Second:
    records how it was delivered."""
    if not (Path(folder) / "first.json").exists():
        _record(folder, "first.json", self.request)
        time.sleep(600)
    _record(folder, "second.json", self.request)


def take(queue_name: str) -> None:
    with connection() as conn:
        channel = conn.channel()
        message = None
        while message is None:
            message = channel.basic_get(queue_name)  # taken, not acked
            time.sleep(0.02)
        print(json.dumps(message.payload if isinstance(message.payload, dict) else message.body.decode()), flush=True)
        time.sleep(600)


def send(queue_name: str, count: int, size: int) -> None:
    with connection() as conn:
        producer = conn.Producer()
        for n in range(count):
            producer.publish({"n": n, "filler": "x" * size}, exchange=queue_name, routing_key=queue_name,
                             declare=[queue(queue_name)], serializer="json")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "take":
        take(arguments[0])
    elif command == "send":
        send(arguments[0], int(arguments[1]), int(arguments[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")
