"""Benchmark: 10,000 installed timers due every minute on PostgreSQL — how late each run is
enqueued, and what the dispatcher costs per tick.

    .venv/bin/python bench/bench_scheduler.py [--timers 10000] [--seconds 130]

Uses its own database (junction_bench) and Redis db 14 (bench/benchdb.py); no worker
consumes, so only the scheduler is measured. The messages are really published to Redis.

1. Steady state: every timer is ``every: 1m`` (each at its own offset in the minute, as
   installed timers are). The dispatcher runs in this process once a second — what the
   beat entry does — for ``--seconds``. Lateness of a run = when its message had been
   published minus its slot. Prints p50/p99/max lateness (target p99 < 2 s) and the tick
   cost (idle and busy).
2. Burst: all timers due at the same instant (the worst case: e.g. after downtime): how
   long one dispatcher call takes to enqueue all of them.

With ``--worker C`` a real worker (``celery worker -Q handlers -c C``, as in
bench_throughput.py) runs the runs as they are enqueued, and each is also measured from its
slot to its recorded finish (steady state), and the burst until its last run is recorded.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from datetime import timedelta

from bench_throughput import start_worker, stop
from benchdb import make_version, percentile, prepare, purge_queues

LUA = "function tick(ctx, input) return { ok = true } end\n"


def create_timers(n: int):
    """n instances with one 1-minute timer each, rows as sync_schedules makes them."""
    from django.utils import timezone

    from marketplace.models import Instance
    from runtime.models import TimerSchedule
    from runtime.schedules import next_slot

    org, version = make_version(
        {"tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "1m"}}},
        {"main.lua": LUA},
    )
    instances = Instance.objects.bulk_create(
        [Instance(organization=org, version=version, name=f"timer {i}", config={}) for i in range(n)], batch_size=2000
    )
    now = timezone.now()
    rows = []
    for instance in instances:
        row = TimerSchedule(instance=instance, handler="tick", every_seconds=60, enabled=True)
        row.next_run_at = next_slot(row, now)
        rows.append(row)
    TimerSchedule.objects.bulk_create(rows, batch_size=2000)
    # Some disabled ones too, as in a real installation: the partial index skips them.
    return rows


def slot_to_finish() -> list[float]:
    """Seconds from each recorded timer run's slot (in its idempotency key) to its finish."""
    from marketplace.models import HandlerRun

    rows = HandlerRun.objects.filter(idempotency_key__startswith="timer:", finished_at__isnull=False)
    return [finished.timestamp() - int(key.rsplit(":", 1)[1])
            for key, finished in rows.values_list("idempotency_key", "finished_at")]


def steady(seconds: float) -> None:
    from runtime.dispatcher import dispatch_due

    lateness, busy, idle, claimed = [], [], [], 0
    next_tick = time.time()
    end = next_tick + seconds
    while next_tick < end:
        time.sleep(max(0.0, next_tick - time.time()))
        t = time.perf_counter()
        report = dispatch_due()
        cost = time.perf_counter() - t
        (busy if report.claimed else idle).append(cost)
        claimed += report.claimed
        for published_at, slots in report.batches:
            lateness += [published_at - slot.timestamp() for slot in slots]
        next_tick += 1.0  # JUNCTION_DISPATCH_EVERY_SECONDS
    print(f"steady state, {seconds:.0f} s, ticks every 1 s: {claimed} runs enqueued "
          f"({claimed / seconds:.0f}/s)")
    print(f"  lateness (published − slot): p50 {percentile(lateness, 50) * 1000:.0f} ms, "
          f"p99 {percentile(lateness, 99) * 1000:.0f} ms, max {max(lateness) * 1000:.0f} ms")
    print(f"  tick cost: busy ticks mean {statistics.mean(busy) * 1000:.1f} ms "
          f"(p99 {percentile(busy, 99) * 1000:.1f} ms, {claimed / max(1, len(busy)):.0f} runs/tick, "
          f"{statistics.mean(busy) / max(1, claimed / max(1, len(busy))) * 1e6:.0f} µs per run); "
          f"idle ticks mean {statistics.mean(idle) * 1000 if idle else float('nan'):.2f} ms")


def burst(n: int, worker: bool = False) -> None:
    from django.utils import timezone

    from runtime.dispatcher import dispatch_due
    from runtime.models import TimerSchedule

    now = timezone.now()
    TimerSchedule.objects.update(next_run_at=now - timedelta(seconds=1))
    t = time.perf_counter()
    report = dispatch_due(max_seconds=600)
    cost = time.perf_counter() - t
    lateness = [published_at - slot.timestamp() for published_at, slots in report.batches for slot in slots]
    print(f"burst: {report.enqueued} timers due at once enqueued in {cost:.2f} s "
          f"({report.enqueued / cost:.0f} runs/s); lateness p50 {percentile(lateness, 50):.2f} s, "
          f"p99 {percentile(lateness, 99):.2f} s")
    if worker:
        from django.db.models import Count

        from marketplace.models import HandlerRun

        runs = HandlerRun.objects.filter(idempotency_key__startswith="timer:")
        deadline = time.monotonic() + 600
        while runs.filter(finished_at__isnull=True).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        done = time.perf_counter() - t
        print(f"  ...and all {runs.count()} run and recorded {done:.1f} s after the dispatcher started "
              f"({runs.count() / done:.0f} runs/s); statuses "
              f"{dict(runs.values_list('status').annotate(n=Count('pk')))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=130)
    parser.add_argument("--worker", type=int, metavar="C", default=0,
                        help="also run the runs with a real worker of this concurrency")
    args = parser.parse_args()
    env = prepare()
    from django.db import connection

    from marketplace.celery import app
    from marketplace.models import HandlerRun

    purge_queues(app)
    worker = start_worker(env, args.worker) if args.worker else None
    if worker:
        time.sleep(5)  # booted before the timers exist: its start-up is not the scheduler's lateness
    try:
        t = time.perf_counter()
        create_timers(args.timers)
        took = time.perf_counter() - t
        if took >= 1:
            # Slots that passed while the rows were written are not the scheduler's lateness:
            # move every timer on by whole minutes (each keeps its place in the minute).
            from django.db.models import F

            from runtime.models import TimerSchedule

            TimerSchedule.objects.update(next_run_at=F("next_run_at") + timedelta(minutes=math.ceil(took / 60)))
        print(f"{args.timers} timers (every 1m) created in {took:.1f} s; "
              f"CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
            cursor.execute(
                "EXPLAIN SELECT id FROM runtime_timerschedule WHERE enabled AND next_run_at <= now() "
                "ORDER BY next_run_at LIMIT 1000 FOR UPDATE SKIP LOCKED"
            )
            print("  due query plan:", " / ".join(row[0].strip() for row in cursor.fetchall()))
        steady(args.seconds)
        if worker:
            time.sleep(3)  # the last tick's runs
            finish = slot_to_finish()
            print(f"  run by a worker (concurrency {args.worker}): slot → recorded finish p50 "
                  f"{percentile(finish, 50) * 1000:.0f} ms, p99 {percentile(finish, 99) * 1000:.0f} ms, "
                  f"max {max(finish) * 1000:.0f} ms")
        purge_queues(app)
        HandlerRun.objects.all().delete()
        burst(args.timers, worker=bool(worker))
    finally:
        if worker:
            stop(worker)
        purge_queues(app)


if __name__ == "__main__":
    main()
