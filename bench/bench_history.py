"""Benchmark: the run history at internet scale on PostgreSQL — 10 million HandlerRun rows
(500 runs a second for 5½ hours), pruned while a worker keeps claiming and recording runs,
and the console's and an instance's run queries at that size.

    .venv/bin/python bench/bench_history.py [--rows 10000000] [--prune-rows 1800000] [--skip-plans]

Uses its own database (junction_bench_history) and no broker (bench/benchdb.py).

1. Generates the rows in SQL (``INSERT … SELECT generate_series``), one every 2 ms (500 a
   second), over 1,000 instances of 21 organizations, oldest first; then VACUUM ANALYZE,
   as a table in use would be. Instance "small-0" of organization "small" (a publisher
   with few customers) holds about 1 run in 1,000.
2. Plans: EXPLAIN (ANALYZE, BUFFERS) of what the console runs for the run list (captured
   from real requests through the admin: a superuser's and a small publisher's list, with
   a status filter, the "running" filter and an instance's runs) and of an instance's
   recent runs, plus the housekeeping queries; each page's time (best of 3).
3. Pruning, with a concurrent writer (another process: insert a queued run, claim it,
   record it — one transaction each, as the runtime does) whose cycle latency is measured
   in each phase:
   a. idle (no pruning): the writer's baseline;
   b. the previous prune_runs (Django's collector over 5,000 unordered ids per batch, no
      pause) on ``--old-rows`` rows;
   c. runtime.retention.prune_runs (the settings' batch and pause) on ``--prune-rows``
      rows (1.8 million: what one hourly housekeeping deletes at 500 runs/s);
   d. one DELETE statement over the next ``--prune-rows`` rows (the alternative).
   For each: rows, seconds, rows/s, batch times (p50/p99/max), WAL written, writer
   p50/p99/max. Table and index sizes before, after, after VACUUM, and after inserting
   ``--prune-rows`` new rows (space reused or the file grown).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time
from datetime import timedelta
from types import SimpleNamespace

os.environ.setdefault("BENCH_DB", "junction_bench_history")

from benchdb import NAME, SERVER, make_version, percentile, prepare  # noqa: E402

RATE = 500  # runs a second
INSTANCES = 1000
CUSTOMER_ORGS = 20
TABLE = "marketplace_handlerrun"
INSERT = f"""
INSERT INTO {TABLE} (instance_id, handler, trigger, status, input, result, logs, error_code, error_message,
                     error_file, error_line, attempt, first_run_id, idempotency_key, starts, created_at,
                     started_at, finished_at, duration_ms)
SELECT CASE WHEN g %% 1000 = 0 THEN %(small)s ELSE %(first)s + (g * 7919) %% %(n)s END,
       CASE WHEN g %% 10 = 0 THEN 'onAlert' ELSE 'tick' END,
       CASE WHEN g %% 10 = 0 THEN 'event' ELSE 'timer' END,
       CASE WHEN g %% 25 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g %% 10 = 0 THEN '{{"event": "device.alert", "payload": {{"text": "jam"}}}}'::jsonb
            ELSE '{{"lastRunAt": "2026-11-01T00:00:00Z"}}'::jsonb END,
       '{{"ok": true, "count": 1}}'::jsonb,
       '[{{"level": "info", "message": "beat", "data": {{"site": "HQ"}}}}]'::jsonb,
       CASE WHEN g %% 25 = 0 THEN 'runtime_error' ELSE '' END,
       CASE WHEN g %% 25 = 0 THEN 'main.lua:3: attempt to index a nil value' ELSE '' END,
       '', NULL, 1, NULL,
       CASE WHEN g %% 10 = 0 THEN NULL ELSE 'timer:' || g END,
       1,
       %(t0)s + g * interval '2 milliseconds',
       %(t0)s + g * interval '2 milliseconds' + interval '5 milliseconds',
       %(t0)s + g * interval '2 milliseconds' + interval '25 milliseconds',
       20
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g
"""


def sql(query: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def one(query: str, params=None):
    return sql(query, params)[0][0]


# --- Data -------------------------------------------------------------------------------------

def create_instances():
    from django.contrib.auth import get_user_model

    from marketplace.choices import Role
    from marketplace.models import Instance, Integration, IntegrationVersion, Membership, Organization
    from marketplace.services.publishing import publish_version

    org, version = make_version({
        "tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "1m"}},
        "onAlert": {"type": "event", "event": "device.alert", "file": "main.lua", "function": "tick"},
    }, {"main.lua": "function tick(ctx, input) return { ok = true } end\n"})
    customers = Organization.objects.bulk_create(
        [Organization(name=f"Customer {i}", slug=f"customer-{i}") for i in range(CUSTOMER_ORGS)]
    )
    orgs = [org, *customers]
    instances = Instance.objects.bulk_create(
        [Instance(organization=orgs[i % len(orgs)], version=version, name=f"bench-{i}", config={})
         for i in range(INSTANCES)]
    )
    # A small publisher: its own integration, installed once.
    small = Organization.objects.create(name="Small", slug="small")
    small_integration = Integration.objects.create(owner=small, name="Small", slug="small", visibility="public")
    draft = IntegrationVersion.objects.create(integration=small_integration, manifest=version.manifest,
                                              files=version.files)
    small_version = publish_version(draft=draft, notes="bench")
    small_instance = Instance.objects.create(organization=small, version=small_version, name="small-0", config={})

    users = get_user_model().objects
    admin = users.create_superuser("bench-admin", "admin@example.com", "x")
    publisher = users.create_user("bench-small", "small@example.com", "x", is_staff=True)
    Membership.objects.create(user=publisher, organization=small, role=Role.PUBLISHER)
    return instances, small_instance, admin, publisher


def existing_instances():
    from django.contrib.auth import get_user_model

    from marketplace.models import Instance

    users = get_user_model().objects
    return (list(Instance.objects.filter(name__startswith="bench-").order_by("pk")),
            Instance.objects.get(name="small-0"), users.get(username="bench-admin"), users.get(username="bench-small"))


def generate(rows: int, *, first_instance: int, small_instance: int, t0, start: int = 1, chunk: int = 1_000_000):
    from django.db import connection, transaction

    began = time.perf_counter()
    lo = start
    while lo < start + rows:
        hi = min(start + rows - 1, lo + chunk - 1)
        with transaction.atomic():
            sql("SET LOCAL synchronous_commit = off")
            # The rows are valid by construction: no per-row foreign-key check queued for commit.
            sql("SET LOCAL session_replication_role = replica")
            with connection.cursor() as cursor:
                cursor.execute(INSERT, {"small": small_instance, "first": first_instance, "n": INSTANCES,
                                        "t0": t0, "lo": lo, "hi": hi})
        lo = hi + 1
        print(f"  {lo - start:>11,} rows  {time.perf_counter() - began:6.1f} s", flush=True)
    return time.perf_counter() - began


def sizes(label: str) -> dict:
    row = sql(f"""SELECT pg_relation_size('{TABLE}'), pg_indexes_size('{TABLE}'), pg_total_relation_size('{TABLE}'),
                         (SELECT count(*) FROM {TABLE})""")[0]
    free = sql(f"SELECT dead_tuple_count, approx_free_space FROM pgstattuple_approx('{TABLE}')")[0]
    mb = 1024 * 1024
    print(f"  {label:<34} table {row[0] / mb:8.0f} MB  indexes {row[1] / mb:7.0f} MB  total {row[2] / mb:8.0f} MB  "
          f"rows {row[3]:>11,}  dead {free[0]:>10,}  free {free[1] / mb:6.0f} MB", flush=True)
    return {"table": row[0], "indexes": row[1], "total": row[2], "rows": row[3]}


# --- The concurrent writer ----------------------------------------------------------------

def writer_loop(dsn: str, instance_id: int, stop, ready, out) -> None:
    """What a worker does to the table per run: insert (enqueue), claim, record — each its
    own transaction, as in runtime.runs / runtime.execution. Sends (start, seconds) per cycle."""
    import psycopg

    samples = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        ready.set()
        while not stop.is_set():
            t = time.time()
            began = time.perf_counter()
            run_id = conn.execute(
                f"""INSERT INTO {TABLE} (instance_id, handler, trigger, status, input, logs, error_code, error_message,
                    error_file, attempt, starts, created_at) VALUES (%s, 'tick', 'event', 'queued', '{{}}', '[]', '',
                    '', '', 1, 0, now()) RETURNING id""", [instance_id]).fetchone()[0]
            conn.execute(
                f"""UPDATE {TABLE} SET status = 'running', started_at = now(), starts = starts + 1
                    WHERE id = %s AND status = 'queued'
                      AND instance_id IN (SELECT id FROM marketplace_instance WHERE enabled)""", [run_id])
            conn.execute(
                f"""UPDATE {TABLE} SET status = 'succeeded', result = '{{"ok": true}}',
                    logs = '[{{"level": "info", "message": "done"}}]', finished_at = now(), duration_ms = 3
                    WHERE id = %s""", [run_id])
            samples.append((t, time.perf_counter() - began))
            time.sleep(0.002)  # about 300 cycles a second: a busy worker's share, not a flood
    out.put(samples)


class Writer:
    def __init__(self, instance_id: int):
        context = multiprocessing.get_context("spawn")
        self.stop, self.ready, self.out = context.Event(), context.Event(), context.Queue()
        self.proc = context.Process(target=writer_loop,
                                    args=(f"{SERVER}/{NAME}", instance_id, self.stop, self.ready, self.out))
        self.proc.start()
        if not self.ready.wait(60):
            raise SystemExit("the writer did not connect")
        self.samples: list[tuple[float, float]] = []

    def finish(self) -> None:
        self.stop.set()
        self.samples = self.out.get(timeout=60)
        self.proc.join(timeout=30)

    def window(self, start: float, end: float) -> str:
        ms = [s * 1000 for t, s in self.samples if start <= t < end]
        if not ms:
            return "writer: no cycles"
        return (f"writer {len(ms) / (end - start):5.0f} cycles/s  p50 {percentile(ms, 50):6.1f} ms  "
                f"p99 {percentile(ms, 99):7.1f} ms  max {max(ms):7.1f} ms")


# --- Pruning ----------------------------------------------------------------------------------

def wal_lsn():
    return one("SELECT pg_current_wal_lsn()")


def wal_mb(since) -> float:
    return one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [since]) / 1024 / 1024


def old_prune_runs(cutoff, batch: int = 5000) -> tuple[int, list[float]]:
    """prune_runs as it was before runtime/retention.py (runtime/runs.py, for comparison)."""
    from marketplace.choices import RunStatus
    from marketplace.models import HandlerRun

    total, times = 0, []
    while True:
        began = time.perf_counter()
        ids = list(HandlerRun.objects.filter(created_at__lt=cutoff, status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED))
                   .values_list("pk", flat=True)[:batch])
        if not ids:
            return total, times
        total += HandlerRun.objects.filter(pk__in=ids).delete()[1].get(HandlerRun._meta.label, 0)
        times.append(time.perf_counter() - began)


def new_prune_runs(now) -> tuple[int, list[float]]:
    """runtime.retention.prune_runs, with each transaction timed (its own pause excluded)."""
    from django.db import transaction

    from runtime import retention

    times = []
    atomic = transaction.atomic

    class timed:
        def __init__(self, *args, **kwargs):
            self.inner = atomic(*args, **kwargs)

        def __enter__(self):
            self.began = time.perf_counter()
            return self.inner.__enter__()

        def __exit__(self, *exc):
            result = self.inner.__exit__(*exc)
            times.append(time.perf_counter() - self.began)
            return result

    # Only retention's own name for the module: Django's deletion code keeps the real atomic.
    retention.transaction = SimpleNamespace(atomic=timed)
    try:
        total = retention.prune_runs(now=now, max_seconds=3600)
    finally:
        retention.transaction = transaction
    return total, times


PHASES: list[tuple[str, float, float]] = []  # (label, start, end) for the writer's figures


def report_prune(label: str, total: int, seconds: float, times: list[float], wal, start, end):
    ms = [t * 1000 for t in times] or [0.0]
    print(f"  {label}: {total:,} rows in {seconds:.1f} s ({total / seconds:,.0f} rows/s), {len(times)} transactions, "
          f"each p50 {percentile(ms, 50):.0f} ms p99 {percentile(ms, 99):.0f} ms max {max(ms):.0f} ms; "
          f"WAL {wal:,.0f} MB", flush=True)
    PHASES.append((label.split(" ", 1)[0], start, end))


# --- Plans ------------------------------------------------------------------------------------

def explain(query: str, params=None, *, label: str) -> None:
    from django.db import transaction

    with transaction.atomic():  # FOR UPDATE needs one; EXPLAIN ANALYZE of it locks, then rolls back
        plan = sql(f"EXPLAIN (ANALYZE, BUFFERS) {query}", params)
        transaction.set_rollback(True)
    print(f"\n  -- {label}")
    for (line,) in plan:
        print(f"     {line}")


def console_pages(admin, publisher, instance, small_instance):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    url = "/admin/marketplace/handlerrun/"
    pages = [
        ("superuser: the run list", admin, url),
        ("superuser: failed runs", admin, f"{url}?status__exact=failed"),
        ("superuser: running runs", admin, f"{url}?status__exact=running"),
        ("superuser: one instance's runs", admin, f"{url}?instance__id__exact={instance.pk}"),
        ("small publisher: the run list", publisher, url),
    ]
    print("\nConsole pages (best of 3 requests):")
    captured = {}
    for label, user, address in pages:
        client = Client()
        client.force_login(user)
        best = None
        for _ in range(3):
            with CaptureQueriesContext(connection) as queries:
                began = time.perf_counter()
                response = client.get(address)
                elapsed = time.perf_counter() - began
            if response.status_code != 200:
                raise SystemExit(f"{address} answered {response.status_code}")
            best = elapsed if best is None else min(best, elapsed)
        # (The paginator's EXPLAIN of the list query, for its estimate, is not explained again.)
        run_queries = [q["sql"] for q in queries.captured_queries
                       if TABLE in q["sql"] and not q["sql"].startswith("EXPLAIN")]
        captured[label] = run_queries
        print(f"  {label:<34} {best * 1000:8.0f} ms  ({len(queries.captured_queries)} queries, "
              f"{len(run_queries)} on the runs table)", flush=True)
    return captured


def plans(admin, publisher, instances, small_instance, now):
    from django.db.models import Q

    from marketplace.choices import RunStatus
    from marketplace.models import HandlerRun
    from runtime import retention

    instance = instances[7]
    captured = console_pages(admin, publisher, instance, small_instance)
    print("\nPlans of the console's queries on the runs table:")
    for label, queries in captured.items():
        for position, query in enumerate(queries, 1):
            explain(query, label=f"{label} ({position}/{len(queries)}): {query[:160]}…")

    def orm(label, queryset):
        from django.db import transaction

        with transaction.atomic():  # compiling FOR UPDATE needs one
            query, params = queryset.query.sql_with_params()
        explain(query, params, label=label)

    print("\nPlans of the runtime's and housekeeping's queries:")
    orm("an instance's 50 recent runs: instance.runs.order_by('-created_at')[:50]",
        instance.runs.order_by("-created_at")[:50])
    orm("the small instance's 50 recent runs", small_instance.runs.order_by("-created_at")[:50])
    cutoff = now - timedelta(days=30)
    first = list(retention.old_runs(cutoff).order_by("created_at", "pk").values_list("pk", "created_at")[:5000])
    if first:
        last_pk, last_at = first[-1]
        orm("prune: the next batch (keyset after the last one)",
            retention.old_runs(cutoff).order_by("created_at", "pk").filter(created_at__gte=last_at)
            .filter(Q(created_at__gt=last_at) | Q(pk__gt=last_pk))
            .select_for_update(skip_locked=True).values_list("pk", "created_at")[:5000])
        ids = [pk for pk, _ in first]
        orm("prune: which of them have recent attempts (kept_chains)",
            HandlerRun.objects.filter(first_run_id__in=ids).filter(
                Q(created_at__gte=cutoff) | ~Q(status__in=retention.FINISHED)).values_list("first_run_id", flat=True))
    requeue = HandlerRun.objects.filter(status=RunStatus.QUEUED, starts=0, created_at__lt=now - timedelta(minutes=15))
    orm("housekeeping: queued runs whose message was lost", requeue.order_by("pk").values_list("pk", flat=True)[:10000])
    orm("housekeeping: running runs whose worker vanished",
        HandlerRun.objects.filter(status=RunStatus.RUNNING, started_at__lt=now - timedelta(minutes=3)).values("pk"))


# --- Main -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--prune-rows", type=int, default=RATE * 3600, help="rows each of c and d deletes")
    parser.add_argument("--old-rows", type=int, default=300_000, help="rows the previous prune_runs deletes (b)")
    parser.add_argument("--idle-seconds", type=float, default=15)
    parser.add_argument("--skip-plans", action="store_true")
    parser.add_argument("--reuse", action="store_true",
                        help="use the rows an earlier run generated (whose pruning never started)")
    args = parser.parse_args()
    if args.old_rows + 2 * args.prune_rows > args.rows:
        raise SystemExit("--rows must hold --old-rows + 2 × --prune-rows")

    prepare(fresh=not args.reuse)
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    connection.ensure_connection()
    sql("CREATE EXTENSION IF NOT EXISTS pgstattuple")
    print(f"PostgreSQL {connection.pg_version // 10000}, database {NAME}; {args.rows:,} runs at {RATE}/s "
          f"({args.rows / RATE / 3600:.1f} h), {INSTANCES} instances\n")
    now = timezone.now()
    retention_days = settings.JUNCTION_RUN_RETENTION_DAYS
    # Rows old enough for a, b and c to prune are at the head; the rest is within retention.
    head = args.old_rows + 2 * args.prune_rows
    if args.reuse:
        instances, small_instance, admin, publisher = existing_instances()
        t0 = one(f"SELECT min(created_at) FROM {TABLE}") - timedelta(milliseconds=2)
        print(f"Reusing {one(f'SELECT count(*) FROM {TABLE}'):,} generated runs\n")
    else:
        instances, small_instance, admin, publisher = create_instances()
        t0 = now - timedelta(days=retention_days) - timedelta(seconds=head / RATE)
        print("Generating runs:")
        seconds = generate(args.rows, first_instance=instances[0].pk, small_instance=small_instance.pk, t0=t0)
        began = time.perf_counter()
        sql(f"VACUUM (ANALYZE) {TABLE}")
        print(f"  {args.rows:,} rows in {seconds:.0f} s; VACUUM ANALYZE {time.perf_counter() - began:.0f} s\n")

    def cutoff_after(rows: int):
        """The ``now`` whose cutoff lies just after the first ``rows`` generated rows."""
        return t0 + timedelta(seconds=rows / RATE) + timedelta(days=retention_days) + timedelta(milliseconds=1)

    print("Sizes:")
    sizes("after generating")
    if not args.skip_plans:
        plans(admin, publisher, instances, small_instance, cutoff_after(head))

    print(f"\nPruning (batch {settings.JUNCTION_RUN_PRUNE_BATCH}, pause {settings.JUNCTION_RUN_PRUNE_PAUSE_MS} ms), "
          "with a concurrent writer:")
    writer = Writer(instances[3].pk)
    start = time.time()
    time.sleep(args.idle_seconds)
    PHASES.append(("a.", start, time.time()))

    wal, start = wal_lsn(), time.time()
    total, times = old_prune_runs(cutoff_after(args.old_rows) - timedelta(days=retention_days))
    report_prune("b. previous prune_runs", total, time.time() - start, times, wal_mb(wal), start, time.time())

    wal, start = wal_lsn(), time.time()
    total, times = new_prune_runs(cutoff_after(args.old_rows + args.prune_rows))
    report_prune("c. retention.prune_runs", total, time.time() - start, times, wal_mb(wal), start, time.time())

    time.sleep(5)
    wal, start = wal_lsn(), time.time()
    cutoff = cutoff_after(head) - timedelta(days=retention_days)
    began = time.perf_counter()
    deleted = sql(f"WITH gone AS (DELETE FROM {TABLE} WHERE created_at < %s AND status IN ('succeeded', 'failed') "
                  "RETURNING 1) SELECT count(*) FROM gone", [cutoff])[0][0]
    one_statement = time.perf_counter() - began
    report_prune("d. one DELETE statement", deleted, time.time() - start, [one_statement], wal_mb(wal), start, time.time())
    time.sleep(3)
    writer.finish()
    print("  The concurrent writer (insert + claim + record, one transaction each) in each phase:")
    for label, start, end in PHASES:
        print(f"  {label} {writer.window(start, end)}")
    everything = [s * 1000 for _, s in writer.samples]
    print(f"  the writer overall: {len(everything):,} cycles, p99 {percentile(everything, 99):.1f} ms, "
          f"median {statistics.median(everything):.1f} ms")

    print("\nSizes:")
    sizes("after pruning")
    began = time.perf_counter()
    sql(f"VACUUM {TABLE}")
    sizes(f"after VACUUM ({time.perf_counter() - began:.0f} s)")
    last_id = one(f"SELECT max(id) FROM {TABLE}")
    generate(args.prune_rows, first_instance=instances[0].pk, small_instance=small_instance.pk,
             t0=now, start=last_id + 1)
    sizes(f"after {args.prune_rows:,} new runs")


if __name__ == "__main__":
    main()
