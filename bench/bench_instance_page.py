"""Benchmark: the customer's instance page (``/instances/<id>/``) and "My instances" on
PostgreSQL as one instance's run history grows: the page counts the runs, shows one page of
them and groups the last 24 hours for the chart, so those are the queries that could grow.

    .venv/bin/python bench/bench_instance_page.py [--sizes 1000,100000,1000000] [--requests 20]

Uses its own database (BENCH_DB, default junction_bench_instance_page; bench/benchdb.py).

1. Installs one instance (a timer, an RPC and an event handler) through the services for
   a member of its organization, plus 19 more instances of the same organization (no runs),
   and 200 instances of other organizations.
2. For each size, adds runs in SQL (``generate_series``) up to that many, one every 30 s
   back from now (so the last 24 hours always hold 2,880 of them, a busy instance), a tenth
   failed; as many again spread over the other organizations' instances (a database holds
   more than one customer: with one instance only, PostgreSQL's statistics say any
   instance has every run, and it plans for that), then ANALYZE.
3. Requests each page ``--requests`` times through Django's test client (in process: no
   HTTP server in the figures) and prints p50 / max milliseconds, the query count, and the
   slowest query's milliseconds; the same with a status filter (``?status=failed``) and
   the last page of runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("BENCH_DB", "junction_bench_instance_page")
os.environ.setdefault("BENCH_REDIS", "redis://127.0.0.1:6379/0")

from benchdb import prepare  # noqa: E402

LUA = "function tick(ctx, input) return {} end\nfunction echo(ctx, input) return input end\n"
HANDLERS = {
    "tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "5m"}},
    "echo": {"type": "rpc", "file": "main.lua", "function": "echo"},
    "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "tick"},
}


def seed():
    from benchdb import make_version
    from django.contrib.auth import get_user_model

    from marketplace.choices import Role
    from marketplace.models import Membership, Organization
    from marketplace.services.installs import install_version

    org, version = make_version(HANDLERS, {"main.lua": LUA})
    user = get_user_model().objects.create_user("bench-member", password="x")
    Membership.objects.create(user=user, organization=org, role=Role.MEMBER)
    instances = [install_version(version=version, organization=org, name=f"Plant {n}", user=user) for n in range(20)]
    others = [Organization.objects.create(name=f"Other {n}", slug=f"other-{n}") for n in range(20)]
    background = [install_version(version=version, organization=others[n % 20], name=f"Site {n}").pk
                  for n in range(200)]
    return user, instances[0], background


def add_runs(instance, background: list[int], upto: int, have: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO marketplace_handlerrun
              (instance_id, handler, trigger, status, input, logs, error_code, error_message, error_file,
               attempt, starts, created_at, duration_ms)
            SELECT (%s::int[])[1 + n %% %s], 'tick', 'timer', 'succeeded', '{}', '[]', '', '', '', 1, 1,
                   now() - n * interval '30 seconds', 10
            FROM generate_series(%s, %s) AS n
            """,
            [background, len(background), have, upto - 1],
        )
        cursor.execute(
            """
            INSERT INTO marketplace_handlerrun
              (instance_id, handler, trigger, status, input, result, logs, error_code, error_message, error_file,
               attempt, starts, created_at, started_at, finished_at, duration_ms)
            SELECT %s, 'tick', 'timer', CASE WHEN n %% 10 = 0 THEN 'failed' ELSE 'succeeded' END,
                   '{}', '{"ok": true}', '[{"level": "info", "message": "ticked", "fields": {}}]',
                   CASE WHEN n %% 10 = 0 THEN 'lua_error' ELSE '' END, '', '', 1, 1,
                   now() - n * interval '30 seconds', now() - n * interval '30 seconds',
                   now() - n * interval '30 seconds' + interval '12 milliseconds', 5 + n %% 40
            FROM generate_series(%s, %s) AS n
            """,
            [instance.pk, have, upto - 1],
        )
        cursor.execute("ANALYZE marketplace_handlerrun")


def measure(client, path: str, requests: int) -> tuple[float, float, int, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.get(path)  # warm: templates compiled, connection open
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    with CaptureQueriesContext(connection) as queries:
        client.get(path)
    slowest = max(float(q["time"]) for q in queries.captured_queries) * 1000
    return statistics.median(times), max(times), len(queries.captured_queries), slowest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    prepare()
    from django.conf import settings
    from django.test import Client

    settings.ALLOWED_HOSTS = ["testserver"]
    user, instance, background = seed()
    client = Client()
    client.force_login(user)
    detail = f"/instances/{instance.pk}/"
    print(f"{'runs':>9}  {'page':<34} {'p50 ms':>7} {'max ms':>7} {'queries':>7} {'slowest q ms':>12}")
    have = 0
    for size in (int(s) for s in args.sizes.split(",")):
        add_runs(instance, background, size, have)
        have = size
        last_page = (size + 19) // 20
        for label, path in (("/instances/", "/instances/"), ("instance page", detail),
                            ("instance page ?status=failed", detail + "?status=failed"),
                            ("instance page, last page", f"{detail}?page={last_page}")):
            p50, worst, count, slowest = measure(client, path, args.requests)
            print(f"{size:>9}  {label:<34} {p50:>7.1f} {worst:>7.1f} {count:>7} {slowest:>12.1f}")


if __name__ == "__main__":
    main()
