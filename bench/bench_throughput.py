"""Benchmark: handler runs per second end to end through Celery (Redis broker, PostgreSQL,
HandlerRun recorded), next to Celery's own rate for a no-op task on the same set-up.

    .venv/bin/python bench/bench_throughput.py [--runs 5000] [--concurrency 2 4]

Uses its own database (junction_bench) and Redis db 14 (bench/benchdb.py). For each
measurement the queue is filled first, then a real worker (``celery worker -Q handlers``,
prefork, prefetch 1, acks_late — the production settings) is started and timed while it
drains the queue:
- no-op: Celery's built-in ``celery.accumulate`` task, timed by the queue draining;
- handler runs: queued HandlerRun rows of a trivial event handler, each executed in the
  Lua sandbox and recorded; timed from the first ``started_at`` to the last ``finished_at``.
Target: ≥ 500 handler runs/s on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from benchdb import BROKER, ROOT, make_version, prepare, purge_queues

LUA = """
function handle(ctx, input)
  return { ok = true, n = input.payload.n }
end
"""


def start_worker(env: dict, concurrency: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "marketplace", "worker", "-Q", "handlers",
               "-c", str(concurrency), "-l", "WARNING", "--without-mingle", "--without-gossip",
               "--without-heartbeat", "-n", f"bench-{os.getpid()}@%h"]
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


def bench_runs(app, env, instance, n: int, concurrency: int) -> tuple[float, dict]:
    from django.db.models import Max, Min

    from marketplace.choices import RunStatus, Trigger
    from marketplace.models import HandlerRun
    from runtime.runs import publish_runs

    purge_queues(app)
    HandlerRun.objects.all().delete()
    runs = HandlerRun.objects.bulk_create([
        HandlerRun(instance=instance, handler="onEvent", trigger=Trigger.EVENT,
                   input={"event": "bench", "payload": {"n": i}})
        for i in range(n)
    ])
    t = time.monotonic()
    publish_runs([r.pk for r in runs])
    publish_rate = n / (time.monotonic() - t)
    proc = start_worker(env, concurrency)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = HandlerRun.objects.filter(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).count()
            if done >= n:
                break
            time.sleep(0.25)
    finally:
        stop(proc)
    agg = HandlerRun.objects.aggregate(start=Min("started_at"), end=Max("finished_at"))
    statuses = dict(HandlerRun.objects.values_list("status").annotate(n=Min("pk")).values_list("status", "n"))
    counts = {s: HandlerRun.objects.filter(status=s).count() for s in statuses}
    elapsed = (agg["end"] - agg["start"]).total_seconds()
    return n / elapsed, {"publish_per_s": publish_rate, "statuses": counts, "seconds": elapsed}


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
    for c in args.concurrency:
        rate, info = bench_runs(app, env, instance, args.runs, c)
        print(f"handler runs (recorded) concurrency {c}: {rate:8.0f} runs/s   ({args.runs} runs in "
              f"{info['seconds']:.1f} s; statuses {info['statuses']}; enqueue {info['publish_per_s']:.0f}/s)")
    purge_queues(app)


if __name__ == "__main__":
    main()
