"""The embedded default's broker (marketplace/broker.py) on real folders and real processes:
a half-written or unreadable message file is quarantined, not fatal; a message given back,
or taken by a consumer that died without acking it, comes back marked redelivered (which
is what runtime.tasks reads to take a run up again); a reader never sees a message file
before it is complete. Every wait is bounded; subprocesses are always killed."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty

import pytest
from django.conf import settings

from .embedded_broker_app import connection, queue, transport_options

BASE_DIR = Path(settings.BASE_DIR)
TIMEOUT = 30


def publish(conn, queue_name: str, body: dict) -> None:
    conn.Producer().publish(body, exchange=queue_name, routing_key=queue_name, declare=[queue(queue_name)],
                            serializer="json")


def drain(conn, queue_name: str, *, timeout: float = 1.0, ack: bool = True) -> list:
    """Every message of ``queue_name`` that arrives until none has for ``timeout`` seconds."""
    received = []

    def on_message(body, message):
        received.append((body, message))
        if ack:
            message.ack()

    with conn.Consumer([queue(queue_name)], callbacks=[on_message], accept=["json"]):
        while True:
            try:
                conn.drain_events(timeout=timeout)
            except (TimeoutError, Empty):
                return received


def message_files(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".msg"))


@pytest.fixture
def broker_dir(tmp_path):
    from marketplace.broker import Transport

    # kombu remembers declared bindings per process; each test's folder starts without any.
    Transport.global_state.clear()
    folder = tmp_path / "broker"
    for name in ("queue", "control", "unacked", "quarantine"):
        (folder / name).mkdir(parents=True)
    return folder


@pytest.fixture
def processes(broker_dir):
    """Starts helper processes (tests.runtime.embedded_broker_app) on ``broker_dir``."""
    started = []

    def start(*arguments, log_name=None) -> subprocess.Popen:
        env = {**os.environ, "EMBEDDED_BROKER_DIR": str(broker_dir)}
        out = open(broker_dir.parent / (log_name or f"process-{len(started)}.log"), "wb")
        proc = subprocess.Popen([sys.executable, *arguments], cwd=BASE_DIR, env=env, stdout=subprocess.PIPE
                                if log_name is None else out, stderr=out, start_new_session=True)
        started.append((proc, out))
        return proc

    yield start
    for proc, out in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        out.close()


def wait_for(predicate, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


# --- Unreadable messages ------------------------------------------------------------------

def test_a_half_written_message_file_is_quarantined_and_the_consumer_goes_on(broker_dir, caplog):
    with connection(broker_dir) as conn:
        publish(conn, "handlers", {"n": 1})
        # What kombu's own writer leaves visible mid-write: the final name, half the JSON, and
        # older than the whole message, so a reader takes it first.
        half = "00000000000000000001_0123456789abcdef0123456789abcdef.handlers.msg"
        (broker_dir / "queue" / half).write_text('{"body": "eyJu", "content-enco')
        with caplog.at_level(logging.ERROR, logger="marketplace.broker"):
            received = drain(conn, "handlers")

    assert [body for body, _ in received] == [{"n": 1}]
    assert (broker_dir / "quarantine" / half).read_text() == '{"body": "eyJu", "content-enco'
    assert message_files(broker_dir / "queue") == []
    assert any(half in record.getMessage() and record.levelno == logging.ERROR for record in caplog.records)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe not utf-8", b'{"properties": {}}', b"[1, 2]"],
                         ids=["empty", "not-utf8", "no-delivery-tag", "not-a-message"])
def test_any_unreadable_message_file_is_quarantined(broker_dir, content):
    with connection(broker_dir) as conn:
        conn.channel()  # makes the folders
        bad = broker_dir / "queue" / "00000000000000000001_0123456789abcdef0123456789abcdef.handlers.msg"
        bad.write_bytes(content)
        publish(conn, "handlers", {"n": 2})
        received = drain(conn, "handlers")

    assert [body for body, _ in received] == [{"n": 2}]
    assert (broker_dir / "quarantine" / bad.name).read_bytes() == content


# --- Atomic writes ------------------------------------------------------------------------

def test_a_reader_never_sees_a_message_file_before_it_is_complete(broker_dir, processes):
    """Another process publishes large messages while this one reads every message file the
    moment it appears under a name a consumer takes: each must be a whole message."""
    with connection(broker_dir) as conn:
        conn.channel()
    queue_folder = broker_dir / "queue"
    writer = processes("-m", "tests.runtime.embedded_broker_app", "send", "handlers", "20", str(1024 * 1024),
                       log_name="writer.log")
    seen, partial = set(), []
    deadline = time.monotonic() + TIMEOUT
    while len(seen) < 20 and time.monotonic() < deadline:
        for name in message_files(queue_folder):
            if name in seen:
                continue
            data = (queue_folder / name).read_bytes()
            try:
                json.loads(data)
            except ValueError:
                partial.append((name, len(data)))
                continue
            seen.add(name)
    writer.wait(timeout=TIMEOUT)

    assert writer.returncode == 0, (broker_dir.parent / "writer.log").read_text()
    assert partial == []
    assert len(seen) == 20
    assert not [name for name in os.listdir(queue_folder) if name.endswith(".tmp")]


# --- Redelivery ---------------------------------------------------------------------------

def test_a_message_given_back_is_marked_redelivered(broker_dir):
    with connection(broker_dir) as conn:
        publish(conn, "handlers", {"n": 1})
        (first,) = drain(conn, "handlers", ack=False)
        assert not first[1].delivery_info.get("redelivered")
        first[1].requeue()  # what Celery does when a pool process dies under an acks_late task

        (again,) = drain(conn, "handlers")

    assert again[0] == {"n": 1}
    assert again[1].delivery_info["redelivered"] is True
    assert message_files(broker_dir / "queue") == []
    assert not list((broker_dir / "unacked").glob("*/*.msg"))


def test_unacked_messages_are_given_back_redelivered_when_the_channel_closes(broker_dir):
    with connection(broker_dir) as conn:
        publish(conn, "handlers", {"n": 1})
        channel = conn.channel()
        taken = channel.basic_get("handlers")
        assert taken is not None
        channel.close()

    assert os.listdir(broker_dir / "unacked") == []  # the channel left nothing behind
    with connection(broker_dir) as conn:
        (again,) = drain(conn, "handlers")
    assert again[1].delivery_info["redelivered"] is True


def test_a_message_taken_by_a_consumer_that_dies_comes_back_redelivered(broker_dir, processes):
    with connection(broker_dir, recover_interval=0) as conn:
        publish(conn, "handlers", {"n": 7})
        consumer = processes("-m", "tests.runtime.embedded_broker_app", "take", "handlers")
        assert json.loads(consumer.stdout.readline())["n"] == 7

        # While the consumer lives, its message is its own: nobody else gets it.
        assert drain(conn, "handlers", timeout=0.5) == []
        assert len(list((broker_dir / "unacked").glob("*/*.msg"))) == 1

        os.killpg(consumer.pid, signal.SIGKILL)
        consumer.wait(timeout=10)
        (again,) = drain(conn, "handlers")

    assert again[0] == {"n": 7}
    assert again[1].delivery_info["redelivered"] is True
    # The dead consumer's folder and lock are gone; only this connection's own remain.
    assert not list((broker_dir / "unacked").glob("*/*.msg"))


def test_of_two_consumers_each_message_goes_to_exactly_one(broker_dir):
    with connection(broker_dir) as first, connection(broker_dir) as second:
        for n in range(50):
            publish(first, "handlers", {"n": n})
        got = []
        threads = [threading.Thread(target=lambda conn=conn: got.extend(drain(conn, "handlers", timeout=0.5)))
                   for conn in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=TIMEOUT)

    assert sorted(body["n"] for body, _ in got) == list(range(50))


# --- Through a real Celery worker ---------------------------------------------------------

def celery_worker(processes, log_name: str, concurrency: int = 1) -> subprocess.Popen:
    return processes("-m", "celery", "-A", "tests.runtime.embedded_broker_app", "worker", "-c", str(concurrency),
                     "-l", "INFO",
                     "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"{log_name}@%h",
                     log_name=f"{log_name}.log")


def send_task(task, broker_dir: Path, *args) -> None:
    task.app.conf.broker_transport_options = transport_options(broker_dir)
    with task.app.connection_for_write() as conn:
        task.apply_async(args, connection=conn)


def worker_log(broker_dir, name: str) -> str:
    return (broker_dir.parent / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.mark.celery
def test_tasks_whose_pool_processes_die_are_delivered_again_marked_redelivered(broker_dir, processes, tmp_path):
    """Twenty tasks, each killing the pool process that runs it the first time, on a worker of
    two processes: every one runs again, told it was redelivered, and the worker keeps
    going (on a blocking transport Celery's classic pool stalls after a few such deaths)."""
    from .embedded_broker_app import die_once

    with connection(broker_dir) as conn:
        conn.channel()
    worker = celery_worker(processes, "worker", concurrency=2)
    folders = [tmp_path / f"task-{n}" for n in range(20)]
    for folder in folders:
        folder.mkdir()
        send_task(die_once, broker_dir, str(folder))

    seconds = [folder / "second.json" for folder in folders]
    # Generous: twenty pool processes die and are replaced one after another, which takes
    # about 15 s on an idle 2-core machine and several times that on a loaded one.
    wait_for(lambda: all(path.exists() for path in seconds) or worker.poll() is not None, "every second delivery",
             timeout=180)
    assert all(path.exists() for path in seconds), worker_log(broker_dir, "worker")
    for folder in folders:
        assert json.loads((folder / "first.json").read_text())["redelivered"] is False
        assert json.loads((folder / "second.json").read_text())["redelivered"] is True
    assert worker.poll() is None  # the worker lives on


@pytest.mark.celery
def test_a_task_of_a_worker_killed_outright_is_delivered_again_to_the_next_worker(broker_dir, processes, tmp_path):
    from .embedded_broker_app import hang_once

    with connection(broker_dir) as conn:
        conn.channel()
    worker = celery_worker(processes, "worker-1")
    send_task(hang_once, broker_dir, str(tmp_path))
    wait_for(lambda: (tmp_path / "first.json").exists() or worker.poll() is not None, "the first delivery")
    assert (tmp_path / "first.json").exists(), worker_log(broker_dir, "worker-1")

    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, without a chance to give anything back
    worker.wait(timeout=10)
    successor = celery_worker(processes, "worker-2")

    second = tmp_path / "second.json"
    wait_for(lambda: second.exists() or successor.poll() is not None, "the delivery to the next worker")
    assert second.exists(), worker_log(broker_dir, "worker-2")
    assert json.loads(second.read_text())["redelivered"] is True
