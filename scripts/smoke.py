"""Smoke run of a production-shaped install: PostgreSQL + Redis, gunicorn, a Celery worker
and beat, all from the Python that runs this script (``scripts/smoke.sh`` gives it a fresh
virtualenv holding ``requirements.txt`` alone, so a dependency that only the test tools
bring in shows up here).

    python scripts/smoke.py [--timeout 90] [--keep]
    SMOKE_PG=postgres://postgres@127.0.0.1:5432  SMOKE_DB=junction_smoke  SMOKE_REDIS=redis://127.0.0.1:6379/13

1. (Re)creates the database SMOKE_DB (never ``junction`` or ``test_junction``), migrates it
   and loads the demo catalog (``load_demo``), with a data folder of its own under a
   temporary directory, so the work tree is left as it was.
2. Starts gunicorn, a worker (queues celery + handlers) and beat, each in a process group
   of its own.
3. POSTs one event to the demo instance "Front-desk printer" through its webhook URL and
   waits until the run it queued has succeeded; moves the "Heartbeat HQ" timer to the next
   second and waits until beat's dispatcher has queued its run and the worker has run it.

Exits 0 when both runs succeeded, 1 otherwise (with the processes' last log lines). The
processes it started are always stopped (TERM, then KILL), and the database dropped unless
``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("SMOKE_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
NAME = os.environ.get("SMOKE_DB", "junction_smoke")
BROKER = os.environ.get("SMOKE_REDIS", "redis://127.0.0.1:6379/13")
EVENT_INSTANCE, EVENT = "Front-desk printer", "device.alert"  # its onAlert handler needs no device
TIMER_INSTANCE = "Heartbeat HQ"


class SmokeFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def recreate_database(*, drop_only: bool = False) -> None:
    import psycopg

    if NAME in {"junction", "test_junction"}:
        raise SystemExit("refusing to smoke-test on the development or test database")
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{NAME}"')


class Processes:
    """The servers this script starts, each in its own session so that stopping one stops
    its children too (gunicorn's and Celery's pool processes)."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str], env: dict) -> None:
        log = open(self.logs / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen(
            args, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SmokeFailed(f"{name} exited with {proc.returncode}")

    def stop(self) -> None:
        for proc in self.procs.values():
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs.values():
            self._signal(proc, signal.SIGKILL)  # the group: pool children left behind too
            proc.wait()

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def tails(self, lines: int = 25) -> str:
        out = []
        for name in self.procs:
            text = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {name} (last {lines} lines) ---")
            out.extend(text[-lines:])
        return "\n".join(out)


def wait_for(what: str, predicate, procs: Processes, deadline: float):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        procs.check_alive()
        time.sleep(0.25)
    raise SmokeFailed(f"timed out waiting for {what}")


def run_finished(run_id: int):
    """The run's status once it is finished; raises if it failed."""
    from marketplace.choices import RunStatus
    from marketplace.models import HandlerRun

    run = HandlerRun.objects.get(pk=run_id)
    if run.status == RunStatus.FAILED:
        raise SmokeFailed(f"run #{run.pk} ({run.handler}) failed: {run.error_code} {run.error_message}")
    return run.status == RunStatus.SUCCEEDED and run


def smoke(procs: Processes, port: int, deadline: float) -> None:
    from django.utils import timezone

    from marketplace.choices import Trigger
    from marketplace.models import HandlerRun, Instance
    from runtime.models import TimerSchedule
    from runtime.schedules import update_timer

    def web_up():
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return True
        except OSError:
            return False

    wait_for("gunicorn to answer", web_up, procs, deadline)
    instance = Instance.objects.get(name=EVENT_INSTANCE)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/{instance.webhook_token}/{EVENT}",
        data=json.dumps({"text": "smoke test"}).encode(), headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
        if response.status != 202 or len(answer.get("runs", [])) != 1:
            raise SmokeFailed(f"webhook answered {response.status} {answer}")
    started = time.monotonic()
    run = wait_for(f"event run #{answer['runs'][0]}", lambda: run_finished(answer["runs"][0]), procs, deadline)
    print(f"event run #{run.pk} ({run.handler}) succeeded in {time.monotonic() - started:.1f} s "
          f"(webhook → worker)", flush=True)

    schedule = TimerSchedule.objects.get(instance__name=TIMER_INSTANCE)
    moved_at = timezone.now()
    update_timer(schedule=schedule, next_run_at=moved_at + timedelta(seconds=1))
    started = time.monotonic()

    def timer_run():
        run = HandlerRun.objects.filter(instance=schedule.instance, trigger=Trigger.TIMER, created_at__gte=moved_at).first()
        return run and run_finished(run.pk)

    run = wait_for("the timer's run", timer_run, procs, deadline)
    print(f"timer run #{run.pk} ({run.handler}) succeeded in {time.monotonic() - started:.1f} s "
          f"(beat → dispatcher → worker)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timeout", type=float, default=90, help="seconds for the whole check once migrated")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    # Stopped from outside (CI's time limit, Ctrl-C): still stop the servers in `finally`.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    data = Path(tempfile.mkdtemp(prefix="junction-smoke-"))
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{SERVER}/{NAME}",
        "CELERY_BROKER_URL": BROKER,
        "JUNCTION_DATA_DIR": str(data / "var"),
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "DEBUG": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into the work tree
        "LOG_LEVEL": "INFO",
    }
    os.environ.update(env)
    python = sys.executable
    procs = Processes(data)
    started = time.monotonic()
    try:
        recreate_database()
        for command in (["migrate", "--noinput", "-v", "0"], ["load_demo"]):
            subprocess.run([python, "manage.py", *command], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        print(f"migrated {NAME} and loaded the demo catalog in {time.monotonic() - started:.1f} s", flush=True)

        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from marketplace.celery import app

        with app.connection_for_write() as conn:  # no message left from an earlier run
            for queue in ("celery", "handlers"):
                try:
                    conn.default_channel.queue_purge(queue)
                except Exception:  # noqa: BLE001 — the queue does not exist yet
                    pass

        procs.start("web", [python, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "1", "--access-logfile", "-"], env)
        procs.start("worker", [python, "-m", "celery", "-A", "marketplace", "worker", "--loglevel", "INFO",
                               "--queues", "celery,handlers", "--concurrency", "1", "--without-mingle",
                               "--without-gossip"], env)
        procs.start("beat", [python, "-m", "celery", "-A", "marketplace", "beat", "--loglevel", "INFO",
                             "--schedule", str(data / "celerybeat-schedule")], env)
        smoke(procs, port, time.monotonic() + args.timeout)
    except Exception as exc:  # noqa: BLE001 — any failure is the smoke run's answer, with the logs
        if not isinstance(exc, SmokeFailed):
            traceback.print_exc()
        print(f"SMOKE FAILED: {exc}", file=sys.stderr)
        print(procs.tails(), file=sys.stderr)
        return 1
    finally:
        procs.stop()
        if "django.db" in sys.modules:
            sys.modules["django.db"].connections.close_all()
        if not args.keep:
            recreate_database(drop_only=True)
        shutil.rmtree(data, ignore_errors=True)
    print(f"smoke run passed in {time.monotonic() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
