"""Shared set-up for the runtime benchmarks: a throw-away PostgreSQL database and a Redis
database of their own, never the development or test ones.

    BENCH_PG=postgres://postgres@127.0.0.1:5432  BENCH_REDIS=redis://127.0.0.1:6379/14

``prepare()`` must run before Django is imported anywhere: it (re)creates the database,
points DATABASE_URL / CELERY_BROKER_URL at it, sets Django up and migrates.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
NAME = os.environ.get("BENCH_DB", "junction_bench")
BROKER = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")


def prepare(*, fresh: bool = True, synchronous_commit: bool = True) -> dict:
    """Create the benchmark database (dropping an old one), configure and migrate.
    ``synchronous_commit=False`` sets the database's synchronous_commit off: a commit
    returns before its WAL is flushed (a crash may lose the last few hundred ms of commits,
    never consistency)."""
    import psycopg

    if NAME in {"junction", "test_junction"}:
        raise SystemExit("refusing to benchmark on the development or test database")
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [NAME]).fetchone()
        if exists and fresh:
            conn.execute(f'DROP DATABASE "{NAME}" WITH (FORCE)')
        if fresh or not exists:
            conn.execute(f'CREATE DATABASE "{NAME}"')
        conn.execute(f'ALTER DATABASE "{NAME}" SET synchronous_commit = {"on" if synchronous_commit else "off"}')
    env = {
        "DATABASE_URL": f"{SERVER}/{NAME}",
        "CELERY_BROKER_URL": BROKER,
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "0",  # production-like: no query log kept per connection
        # Workers keep their database connection between tasks (production should too).
        "DB_CONN_MAX_AGE": os.environ.get("DB_CONN_MAX_AGE", "300"),
    }
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return env


def make_version(handlers: dict, files: dict, *, min_timer_seconds: int | None = None):
    """An organization and a published version with ``handlers`` (through the services)."""
    from django.conf import settings

    from marketplace.models import Integration, IntegrationVersion, Organization
    from marketplace.services.publishing import publish_version

    if min_timer_seconds is not None:
        settings.JUNCTION_MIN_TIMER_SECONDS = min_timer_seconds
    org = Organization.objects.create(name="Bench", slug="bench")
    integration = Integration.objects.create(owner=org, name="Bench", slug="bench", visibility="public")
    draft = IntegrationVersion.objects.create(
        integration=integration,
        manifest={
            "name": "bench", "title": "Bench", "configSchema": {"type": "object", "properties": {}},
            "resources": {}, "permissions": ["integration.containers", "log"],
            "dataContainerSchemas": {"beats": {"type": "object"}}, "handlers": handlers,
        },
        files=files,
    )
    return org, publish_version(draft=draft, notes="bench")


def purge_queues(app) -> None:
    with app.connection_for_write() as conn:
        for queue in ("celery", "handlers"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # the queue does not exist yet
                pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(q / 100 * (len(ordered) - 1)))))
    return ordered[index]
