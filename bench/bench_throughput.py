"""Benchmark: handler runs per second end to end through Celery (Redis broker, PostgreSQL,
HandlerRun recorded), next to Celery's own rate for a no-op task on the same set-up, and
where the CPU goes.

    .venv/bin/python bench/bench_throughput.py [--runs 5000] [--concurrency 2 4]

Uses its own database (junction_bench) and Redis db 14 (bench/benchdb.py). For each
measurement the queue is filled first, then a real worker (``celery worker -Q handlers``,
prefork, prefetch 1, acks_late — the production settings) is started and timed while it
drains the queue:
- no-op: Celery's built-in ``celery.accumulate`` task, timed by the queue draining;
- handler runs: queued HandlerRun rows of a trivial event handler, each executed in the
  Lua sandbox and recorded; timed from the first ``started_at`` to the last ``finished_at``.
  Sent two ways: one run per message (``JUNCTION_RUN_BATCH_MAX=1``: events arriving one
  by one) and as one burst (``messages.publish_runs`` batching it: a dispatcher tick, polled
  items), which is how runs sent together travel. One run per message is also measured with
  two workers: a worker's parent process handles its messages one at a time.
CPU per run is read from /proc for the worker's parent and pool processes, PostgreSQL and
Redis while the queue drains (worker start-up excluded).
Target: ≥ 500 handler runs/s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from benchdb import BROKER, ROOT, make_version, prepare, purge_queues

LUA = """
function handle(ctx, input)
  return { ok = true, n = input.payload.n }
end
"""


def start_worker(env: dict, concurrency: int, index: int = 0) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "marketplace", "worker", "-Q", "handlers",
               "-c", str(concurrency), "-l", "WARNING", "--without-mingle", "--without-gossip",
               "--without-heartbeat", "-n", f"bench-{os.getpid()}-{index}@%h"]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def queue_length(redis, name: str = "handlers") -> int:
    return redis.llen(name)


def bench_noop(app, redis, env, n: int, concurrency: int) -> float:
    purge_queues(app)
    with app.producer_or_acquire() as producer:
        for i in range(n):
            app.send_task("celery.accumulate", args=(i,), queue="handlers", producer=producer)
    proc = start_worker(env, concurrency)
    try:
        deadline = time.monotonic() + 300
        while queue_length(redis) == n and time.monotonic() < deadline:
            time.sleep(0.002)
        t0 = time.monotonic()
        start_len = queue_length(redis)
        while (queue_length(redis) or redis.hlen("unacked")) and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - t0
    finally:
        stop(proc)
    return (start_len + 1) / elapsed if elapsed else float("nan")


def cpu_by_group(worker_pids: set[int]) -> dict[str, float]:
    """CPU seconds used so far by the worker's parent, its pool processes, PostgreSQL and
    Redis, from /proc. Pool processes are recycled (max_tasks_per_child) and PostgreSQL
    backends end with their connection: those that have exited are counted through their
    parent's ``cutime``/``cstime``."""
    tick = os.sysconf("SC_CLK_TCK")
    groups = {"worker parent": 0.0, "worker pool": 0.0, "postgres": 0.0, "redis": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        pid, ppid = int(stat.parent.name), int(fields[1])
        own, reaped = (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick
        if pid in worker_pids:
            groups["worker parent"] += own
            groups["worker pool"] += reaped
        elif ppid in worker_pids:
            groups["worker pool"] += own
        elif comm.startswith("postgres"):
            groups["postgres"] += own + reaped
        elif comm.startswith("redis"):
            groups["redis"] += own
    return groups


def bench_runs(app, env, instance, n: int, concurrency: int, batch_max: int | None,
               workers: int = 1) -> tuple[float, dict]:
    from django.conf import settings
    from django.db.models import Count, Max, Min

    from marketplace.choices import RunStatus, Trigger
    from marketplace.models import HandlerRun
    from runtime.messages import message_batches, publish_runs

    purge_queues(app)
    HandlerRun.objects.all().delete()
    runs = HandlerRun.objects.bulk_create([
        HandlerRun(instance=instance, handler="onEvent", trigger=Trigger.EVENT,
                   input={"event": "bench", "payload": {"n": i}})
        for i in range(n)
    ])
    default_max = settings.JUNCTION_RUN_BATCH_MAX
    settings.JUNCTION_RUN_BATCH_MAX = batch_max or default_max
    try:
        messages = len(message_batches([r.pk for r in runs]))
        t = time.monotonic()
        publish_runs([r.pk for r in runs])
        publish_rate = n / (time.monotonic() - t)
    finally:
        settings.JUNCTION_RUN_BATCH_MAX = default_max
    procs = [start_worker(env, concurrency, index) for index in range(workers)]
    pids = {proc.pid for proc in procs}
    pending = HandlerRun.objects.exclude(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
    try:
        deadline = time.monotonic() + 600
        while not HandlerRun.objects.exclude(status=RunStatus.QUEUED).exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        cpu_before, wall_before = cpu_by_group(pids), time.monotonic()
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cpu_after, wall = cpu_by_group(pids), time.monotonic() - wall_before
    finally:
        for proc in procs:
            stop(proc)
    agg = HandlerRun.objects.aggregate(start=Min("started_at"), end=Max("finished_at"))
    counts = dict(HandlerRun.objects.values_list("status").annotate(n=Count("pk")))
    elapsed = (agg["end"] - agg["start"]).total_seconds()
    cpu_ms = {group: 1000 * (cpu_after[group] - cpu_before[group]) / n for group in cpu_before}
    return n / elapsed, {"publish_per_s": publish_rate, "statuses": counts, "seconds": elapsed,
                         "messages": messages, "cpu_ms": cpu_ms, "busy": sum(cpu_ms.values()) / 1000 * n / wall / 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--noops", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--async-commit", action="store_true",
                        help="synchronous_commit=off on the benchmark database")
    args = parser.parse_args()

    env = prepare(synchronous_commit=not args.async_commit)
    import redis as redis_lib

    from marketplace.celery import app
    from marketplace.services.installs import install_version

    org, version = make_version(
        {"onEvent": {"type": "event", "event": "bench", "file": "main.lua", "function": "handle"}}, {"main.lua": LUA}
    )
    instance = install_version(version=version, organization=org, name="bench", config={}, bindings={})
    redis = redis_lib.Redis.from_url(BROKER)
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; broker {BROKER}; "
          f"database {env['DATABASE_URL']} (synchronous_commit {'off' if args.async_commit else 'on'})")
    for c in args.concurrency:
        rate = bench_noop(app, redis, env, args.noops, c)
        print(f"celery no-op task      concurrency {c}: {rate:8.0f} tasks/s  ({args.noops} tasks)")
    cases = [("one run per message", 1, 1, c) for c in args.concurrency]
    cases.append(("one run per message", 1, 2, 2))  # two workers: two parent processes
    cases += [("sent as one burst", None, 1, c) for c in args.concurrency]
    for label, batch_max, workers, c in cases:
        rate, info = bench_runs(app, env, instance, args.runs, c, batch_max, workers)
        cpu = ", ".join(f"{group} {ms:.2f}" for group, ms in info["cpu_ms"].items())
        print(f"handler runs, {label:20s} {workers} worker(s) x concurrency {c}: {rate:5.0f} runs/s  "
              f"({args.runs} runs in {info['messages']} messages, {info['seconds']:.1f} s; {info['statuses']})")
        print(f"    CPU ms per run: {cpu}; total {sum(info['cpu_ms'].values()):.2f} "
              f"(both cores {100 * info['busy']:.0f}% busy)")
    purge_queues(app)


if __name__ == "__main__":
    main()
