"""``GET /api/v1/runs/`` with many runs: latency for the customer (its runs whole) and for
the publisher (its customers' runs as support fields), and the plan of the page query.

    BENCH_PG=postgres://postgres@127.0.0.1:5432 .venv/bin/python bench/bench_runs_api.py [--runs 100000]

A throw-away PostgreSQL database (``BENCH_DB``, default junction_bench_runs_api). Two
customer organizations install one integration ten times each; ``--runs`` runs are spread
over the twenty instances (finished, with a few log lines each). Requests go through
Django's test client in this process (the whole stack but the HTTP server), 30 of each kind
after 3 warm-ups; figures are p50/p99 in ms and queries per request.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("BENCH_DB", "junction_bench_runs_api")

import benchdb  # noqa: E402  (bench/ is on sys.path when run as a script)

QUERIES = [
    ("newest 50", "/api/v1/runs/?page_size=50"),
    ("one instance", "/api/v1/runs/?instance={instance}&page_size=50"),
    ("failed only", "/api/v1/runs/?status=failed&page_size=50"),
    ("page 100", "/api/v1/runs/?page_size=50&page=100"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    args = parser.parse_args()
    benchdb.prepare()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from rest_framework.test import APIClient

    from marketplace.choices import Role, RunStatus, Trigger
    from marketplace.models import HandlerRun, Integration, IntegrationVersion, Membership, Organization
    from marketplace.services.installs import install_version
    from marketplace.services.publishing import publish_version
    from marketplace.services.tokens import create_api_token

    publisher_org = Organization.objects.create(name="Pub", slug="pub")
    customers = [Organization.objects.create(name=f"Customer {n}", slug=f"customer-{n}") for n in range(2)]
    manifest = {"name": "bench", "title": "Bench", "permissions": ["log"], "handlers": {
        "ping": {"type": "event", "event": "ping", "file": "main.lua", "function": "ping"}}}
    integration = Integration.objects.create(owner=publisher_org, name="Bench", slug="bench")
    version = publish_version(draft=IntegrationVersion.objects.create(
        integration=integration, manifest=manifest, files={"main.lua": "function ping() end"}), notes="x")
    instances = [install_version(version=version, organization=org, name=f"i{n}", config={}, bindings={})
                 for org in customers for n in range(10)]
    users = {}
    for label, org, role in (("customer", customers[0], Role.MEMBER), ("publisher", publisher_org, Role.PUBLISHER)):
        user = get_user_model().objects.create_user(label)
        Membership.objects.create(user=user, organization=org, role=role)
        users[label] = user

    now = timezone.now()
    logs = [{"level": "info", "message": f"line {n}", "fields": {"n": n}} for n in range(5)]
    batch = []
    for n in range(args.runs):
        failed = n % 10 == 0
        batch.append(HandlerRun(
            instance=instances[n % len(instances)], handler="ping", trigger=Trigger.EVENT,
            status=RunStatus.FAILED if failed else RunStatus.SUCCEEDED, input={"event": "ping", "payload": {"n": n}},
            result=None if failed else {"n": n}, logs=logs, error_code="lua_error" if failed else "",
            error_message="main.lua:1: boom" if failed else "", started_at=now, finished_at=now, duration_ms=3,
        ))
        if len(batch) == 5000:
            HandlerRun.objects.bulk_create(batch)
            batch = []
    HandlerRun.objects.bulk_create(batch)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"{HandlerRun.objects.count():,} runs over {len(instances)} instances of 2 customers")

    for label, user in users.items():
        client = APIClient()
        _, secret = create_api_token(user=user, name="bench")
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        for name, path in QUERIES:
            path = path.format(instance=instances[0].pk)
            for _ in range(3):
                assert client.get(path).status_code == 200
            times = []
            with CaptureQueriesContext(connection) as captured:
                for _ in range(30):
                    start = time.perf_counter()
                    response = client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
            print(f"{label:9} {name:13} p50 {benchdb.percentile(times, 50):6.1f} ms  p99 "
                  f"{benchdb.percentile(times, 99):6.1f} ms  {len(captured) // 30} queries  "
                  f"count {response.json()['count']:,}")

    from runtime.api import RunViewSet

    view = RunViewSet()
    view.action = "list"
    view.request = type("R", (), {"user": users["customer"]})()
    page = view.get_queryset()[:50]
    with connection.cursor() as cursor:
        sql, params = page.query.sql_with_params()
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF, SUMMARY ON) " + sql, params)
        print("\nthe customer's first page:")
        for (line,) in cursor.fetchall():
            print("  " + line)


if __name__ == "__main__":
    main()
