"""Soak test of the embedded default: web + worker + beat exactly as ``make run`` starts them
(the commands of Procfile.dev), on SQLite and the filesystem broker, under webhook events and
timers for ``--minutes``; then checks that nothing fell over and prints figures.

    .venv/bin/python bench/soak.py [--minutes 10] [--rate 5] [--instances 10] [--no-demo]
                                   [--kill-pool-every SECONDS] [--keep]

Uses a data directory of its own (a temporary folder: database, broker, logs) and a free port;
DATABASE_URL and CELERY_BROKER_URL are ignored. Set-up: migrate, the demo catalog (its
pretend devices are the web server on that port, JUNCTION_PORT), and ``--instances``
instances of a soak integration, each with a 10-second timer and an event handler. Then, for ``--minutes``, events are posted to the instances' webhooks in
turn at ``--rate`` per second while the timers fire. ``--kill-pool-every`` also kills a
worker pool process now and then (SIGKILL), as a memory limit or a crash would.

At the end beat is stopped, the queue is given up to ``--drain`` seconds to empty, and the
checks are:
- no process exited before it was told to;
- every event posted was accepted, and each of its runs finished (none lost);
- no run is left ``queued`` or ``running``; no message file was quarantined or left unacked.
Figures: events posted, runs by trigger and status, p50/p99 queue → finish, each process's
RSS (start, peak, end), log lines by level. Exit status 0 when every check passes.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import percentile  # noqa: E402  (bench/ is on sys.path when run as a script)

SOAK_LUA = """
function on_event(ctx, input)
  ctx.integration.containersSet("beats", "last-event", { n = input.payload.n })
  ctx.log.info("event", { n = input.payload.n })
  return { n = input.payload.n }
end

function tick(ctx, input)
  local last = ctx.integration.containersGet("beats", "ticks")
  local count = (last and last.count or 0) + 1
  ctx.integration.containersSet("beats", "ticks", { count = count })
  return { count = count }
end
"""
SOAK_HANDLERS = {
    "onPing": {"type": "event", "event": "ping", "file": "main.lua", "function": "on_event"},
    "tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "10s"}},
}
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Our LOGGING format, Celery's own format (pool bookkeeping), runserver's access lines.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (?P<level>[A-Z]+) ")
CELERY_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:,]+: (?P<level>[A-Z]+)/")
ACCESS_LINE = re.compile(r'^\[\d\d/\w+/\d{4} [\d:]+\] "')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def procfile() -> dict[str, str]:
    """Procfile.dev: what ``make run`` starts (honcho), name → command."""
    commands = {}
    for line in (ROOT / "Procfile.dev").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            commands[name.strip()] = command.strip()
    return commands


def manage(env: dict, *arguments: str) -> None:
    subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)


class Processes:
    """The Procfile's processes, each in a process group of its own, logging to a file."""

    def __init__(self, env: dict, logs: Path):
        self.env, self.logs = env, logs
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopped: set[str] = set()
        self.rss: dict[str, list[int]] = {}

    def start(self) -> None:
        for name, command in procfile().items():
            log = open(self.logs / f"{name}.log", "wb")
            self.procs[name] = subprocess.Popen(["/bin/sh", "-c", f"exec {command}"], cwd=ROOT, env=self.env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()

    def crashed(self) -> dict[str, int]:
        return {name: proc.returncode for name, proc in self.procs.items()
                if name not in self.stopped and proc.poll() is not None}

    def stop(self, name: str) -> None:
        self.stopped.add(name)
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # what honcho sends on Ctrl-C
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def group(self, name: str) -> list[int]:
        """The processes of ``name``'s group (the worker's pool processes too)."""
        leader = self.procs[name].pid
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == leader:  # pgrp
                pids.append(int(stat.parent.name))
        return pids

    def sample_rss(self) -> None:
        for name in self.procs:
            if name in self.stopped or self.procs[name].poll() is not None:
                continue
            total = 0
            for pid in self.group(name):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
                total += int(match.group(1)) if match else 0
            self.rss.setdefault(name, []).append(total)

    def pool_pids(self) -> list[int]:
        worker = self.procs["worker"].pid
        return [pid for pid in self.group("worker") if pid != worker]


def log_levels(text: str) -> Counter:
    counts = Counter()
    for line in text.splitlines():
        match = LOG_LINE.match(line) or CELERY_LINE.match(line)
        if match and match.group("level") in LEVELS:
            counts[match.group("level")] += 1
        elif ACCESS_LINE.match(line):
            counts["INFO (access)"] += 1
        elif line.startswith("Traceback"):
            counts["tracebacks"] += 1
        else:
            counts["other"] += 1
    return counts


def post(url: str, body: dict) -> tuple[int, list[int]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()).get("runs", [])
    except urllib.error.HTTPError as exc:
        return exc.code, []
    except OSError:
        return 0, []


def wait_until_up(url: str, procs: Processes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if procs.crashed():
            raise SystemExit(f"a process exited while starting: {procs.crashed()}")
        try:
            urllib.request.urlopen(url, timeout=5).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the web process did not answer {url} within {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--rate", type=float, default=5, help="webhook events posted per second")
    parser.add_argument("--instances", type=int, default=10, help="soak instances (a 10 s timer each)")
    parser.add_argument("--no-demo", action="store_true", help="do not load the demo catalog")
    parser.add_argument("--kill-pool-every", type=float, default=0, metavar="SECONDS",
                        help="SIGKILL a worker pool process this often (0: never)")
    parser.add_argument("--drain", type=float, default=180, help="seconds allowed for the queue to empty at the end")
    parser.add_argument("--keep", action="store_true", help="keep the data directory (logs, database)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="junction-soak-"))
    logs = data_dir / "logs"
    logs.mkdir()
    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "CELERY_BROKER_URL"}}
    env.update(JUNCTION_DATA_DIR=str(data_dir), JUNCTION_PORT=str(port), DJANGO_SETTINGS_MODULE="marketplace.settings",
               PYTHONUNBUFFERED="1", PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    os.environ.update(env)
    for key in ("DATABASE_URL", "CELERY_BROKER_URL"):
        os.environ.pop(key, None)

    print(f"data {data_dir}, port {port}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    manage(env, "migrate", "--noinput")
    if not args.no_demo:
        manage(env, "load_demo")

    import django

    django.setup()
    from benchdb import make_version
    from django.conf import settings
    from django.db.models import Count

    from marketplace.choices import RunStatus
    from marketplace.models import HandlerRun
    from marketplace.services.installs import install_version

    org, version = make_version(SOAK_HANDLERS, {"main.lua": SOAK_LUA})
    instances = [install_version(version=version, organization=org, name=f"soak-{n}", config={}, bindings={})
                 for n in range(args.instances)]
    hooks = [f"http://127.0.0.1:{port}/hooks/{instance.webhook_token}/ping" for instance in instances]

    procs = Processes(env, logs)
    procs.start()
    ok = True
    try:
        wait_until_up(f"http://127.0.0.1:{port}/", procs)
        procs.sample_rss()
        started = time.monotonic()
        end = started + args.minutes * 60
        next_post, next_sample = started, started + 10
        next_kill = started + args.kill_pool_every if args.kill_pool_every else float("inf")
        posted, refused, run_ids, kills = 0, Counter(), [], 0
        while time.monotonic() < end and not procs.crashed():
            now = time.monotonic()
            if now >= next_sample:
                procs.sample_rss()
                next_sample += 10
            if now >= next_kill:
                pool = procs.pool_pids()
                if pool:
                    os.kill(pool[kills % len(pool)], signal.SIGKILL)
                    kills += 1
                next_kill += args.kill_pool_every
            if now < next_post:
                time.sleep(min(next_post - now, 0.05))
                continue
            status, ids = post(hooks[posted % len(hooks)], {"n": posted})
            posted += 1
            next_post += 1 / args.rate
            if status == 202 and ids:
                run_ids.extend(ids)
            else:
                refused[status] += 1
        seconds = time.monotonic() - started
        crashed_during = procs.crashed()
        # Log lines up to here are the running phase; after it, stopping (honcho's SIGTERM to
        # each process group, as on Ctrl-C, makes the worker log its pool processes' exits).
        running_bytes = {name: (logs / f"{name}.log").stat().st_size for name in procs.procs}
        procs.sample_rss()

        # No new timer runs from here on; wait for what is queued to finish.
        procs.stop("beat")
        drain_started = time.monotonic()
        unfinished = HandlerRun.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
        while unfinished.exists() and time.monotonic() - drain_started < args.drain and not procs.crashed():
            time.sleep(1)
        drained_in = time.monotonic() - drain_started
        crashed = {**crashed_during, **procs.crashed()}
        procs.sample_rss()
    finally:
        for name in list(procs.procs):
            procs.stop(name)

    # --- Checks -----------------------------------------------------------------------------
    events = HandlerRun.objects.filter(pk__in=run_ids)
    event_status = Counter(events.values_list("status", flat=True))
    missing = len(set(run_ids)) - events.count()
    stuck = dict(Counter(unfinished.values_list("status", flat=True)))
    broker = Path(settings.BROKER_DIR)
    quarantined = sorted(os.listdir(broker / "quarantine"))
    left_unacked = sorted(str(path.relative_to(broker)) for path in (broker / "unacked").glob("*/*.msg"))
    left_queued = sorted(name for name in os.listdir(broker / "queue") if name.endswith(".msg"))
    problems = []
    if crashed:
        problems.append(f"processes exited on their own: {crashed}")
    if refused:
        problems.append(f"events not accepted (HTTP status: count): {dict(refused)}")
    if missing:
        problems.append(f"{missing} runs of posted events are missing")
    if set(event_status) - {RunStatus.SUCCEEDED}:
        problems.append(f"runs of posted events not succeeded: {dict(event_status)}")
    if stuck:
        problems.append(f"runs left unfinished after {drained_in:.0f} s of draining: {stuck}")
    if quarantined:
        problems.append(f"{len(quarantined)} message files quarantined")
    if left_unacked or left_queued:
        problems.append(f"message files left: {len(left_queued)} queued, {len(left_unacked)} unacked")

    # --- Figures ----------------------------------------------------------------------------
    print(f"\nran {seconds / 60:.1f} min; load average {os.getloadavg()[0]:.1f} (1 min) at the end; "
          f"queue empty {drained_in:.1f} s after the posting stopped")
    print(f"events posted: {posted} ({posted / seconds:.2f}/s), accepted {posted - sum(refused.values())}, "
          f"runs {len(run_ids)}" + (f"; pool processes killed: {kills}" if kills else ""))
    rows = HandlerRun.objects.values("trigger", "status").annotate(n=Count("id")).order_by("trigger", "status")
    print("runs by trigger and status: " + ", ".join(f"{row['trigger']}/{row['status']} {row['n']}" for row in rows))
    soak_runs = HandlerRun.objects.filter(instance__in=instances, finished_at__isnull=False)
    for trigger in ("event", "timer"):
        latencies = [(finished - created).total_seconds() * 1000 for created, finished in
                     soak_runs.filter(trigger=trigger).values_list("created_at", "finished_at")]
        if latencies:
            print(f"{trigger} runs of the soak instances, queued → finished: p50 {percentile(latencies, 50):.0f} ms, "
                  f"p99 {percentile(latencies, 99):.0f} ms, max {max(latencies):.0f} ms ({len(latencies)} runs)")
    restarted = soak_runs.filter(starts__gt=1).count()
    if restarted:
        print(f"runs picked up more than once (their worker died): {restarted}")
    for name, samples in procs.rss.items():
        print(f"RSS {name:6s} (process group): start {samples[0] / 1024:.0f} MB, peak {max(samples) / 1024:.0f} MB, "
              f"end {samples[-1] / 1024:.0f} MB")
    for name in procs.procs:
        text = (logs / f"{name}.log").read_bytes()
        running, stopping = (log_levels(part.decode(errors="replace")) for part in
                             (text[:running_bytes[name]], text[running_bytes[name]:]))
        print(f"log lines {name:6s}: " + ", ".join(f"{level} {n}" for level, n in sorted(running.items()))
              + "; while stopping: " + (", ".join(f"{level} {n}" for level, n in sorted(stopping.items())) or "none"))

    if problems:
        print("\nFAIL\n- " + "\n- ".join(problems))
        ok = False
    else:
        print("\nPASS: no process fell over, no run lost or left unfinished, no message quarantined or left behind")
    if args.keep or not ok:
        print(f"data and logs kept in {data_dir}")
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
