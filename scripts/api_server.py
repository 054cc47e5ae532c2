"""A throw-away Junction for API checks: a fresh database holding the demo catalog plus a
customer organization, gunicorn (2 workers) on a free port, optionally a Celery worker, and
a personal API token for a publisher and for a customer of another organization.

    python scripts/api_server.py [--worker] [--keep] -- COMMAND [ARGS...]

runs COMMAND with these variables set, then stops everything and removes the database:

    JUNCTION_API_BASE        http://127.0.0.1:PORT
    JUNCTION_PUBLISHER_TOKEN publisher@acme (the demo's publisher, role publisher)
    JUNCTION_CUSTOMER_TOKEN  customer@umbrella (role member of "Umbrella Corp", which
                             publishes nothing: everything it uses comes from another
                             organization)

The database is an SQLite file in a temporary folder, or — when DATABASE_URL names a
PostgreSQL server — a database ``<name>_api`` on that server, dropped afterwards. The broker
is always the filesystem one in the temporary folder, so nothing queued here reaches another
worker. API throttling is set out of reach: fuzzing sends thousands of requests a minute.
``scripts/api_fuzz.py`` uses the same start (``serve``).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from smoke import ROOT, Processes, free_port

PUBLISHER, CUSTOMER = "publisher", "customer"

# Run by `manage.py shell -c`: a second organization whose member installs what others publish,
# with one device of its own, made through the same services as the console.
CUSTOMER_SETUP = """
from django.contrib.auth import get_user_model
from marketplace.choices import Role
from marketplace.models import Membership, Organization
from marketplace.services.devices import create_device
org, _ = Organization.objects.get_or_create(slug="umbrella", defaults={"name": "Umbrella Corp"})
user = get_user_model().objects.create_user(username="customer", password="junction-demo",
                                            email="customer@example.com")
Membership.objects.create(user=user, organization=org, role=Role.MEMBER)
create_device(organization=org, name="Umbrella front desk", kind="http",
              base_url="http://127.0.0.1:9/", credentials={"apiKey": "umbrella-key"}, user=user)
"""


@dataclass
class Server:
    base: str
    publisher_token: str
    customer_token: str
    procs: Processes

    def env(self) -> dict[str, str]:
        return {"JUNCTION_API_BASE": self.base, "JUNCTION_PUBLISHER_TOKEN": self.publisher_token,
                "JUNCTION_CUSTOMER_TOKEN": self.customer_token}


class ServerFailed(Exception):
    pass


def _database(data: Path) -> tuple[str, str | None]:
    """The DATABASE_URL to serve from, and the PostgreSQL database to drop afterwards."""
    given = os.environ.get("DATABASE_URL", "")
    if not given.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{data / 'api.sqlite3'}", None
    parts = urlsplit(given)
    name = f"{parts.path.lstrip('/') or 'junction'}_api"
    return urlunsplit(parts._replace(path=f"/{name}")), name


def _recreate_pg(url: str, name: str, *, drop_only: bool = False) -> None:
    import psycopg

    with psycopg.connect(urlunsplit(urlsplit(url)._replace(path="/postgres")), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def _manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise ServerFailed(f"manage.py {' '.join(args[:2])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def _wait_up(base: str, procs: Processes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/schema/", timeout=5) as response:
                if response.status == 200:
                    return
        except (OSError, urllib.error.HTTPError):
            pass
        procs.check_alive()
        time.sleep(0.25)
    raise ServerFailed(f"{base} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def serve(*, worker: bool = False, keep: bool = False, log=print) -> Iterator[Server]:
    """Yield a running throw-away server; stop it and remove its data on the way out (the
    processes' last log lines are printed when the body or the start raised)."""
    data = Path(tempfile.mkdtemp(prefix="junction-api-"))
    database, pg_name = _database(data)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "JUNCTION_PROFILE")},
        "DATABASE_URL": database,
        "JUNCTION_DATA_DIR": str(data / "var"),
        "DJANGO_SETTINGS_MODULE": "marketplace.settings",
        "JUNCTION_API_THROTTLE_USER": "1000000/min",
        "JUNCTION_API_THROTTLE_ANON": "1000000/min",
        "PYTHONDONTWRITEBYTECODE": "1",  # nothing written into the work tree
    }
    procs = Processes(data)
    started = time.monotonic()
    failed = False
    try:
        if pg_name:
            _recreate_pg(database, pg_name)
        _manage(env, "migrate", "--noinput", "-v", "0")
        _manage(env, "load_demo")
        _manage(env, "shell", "-c", CUSTOMER_SETUP)
        tokens = [_manage(env, "create_api_token", who, "--name", "api-checks").strip() for who in (PUBLISHER, CUSTOMER)]
        port = free_port()
        env["JUNCTION_PORT"] = str(port)
        procs.start("web", [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
                            "--workers", "2", "--timeout", "90", "--access-logfile", "-",
                            # Fuzzed query strings run to kilobytes: gunicorn's own 414 is not the API's.
                            "--limit-request-line", "0"], env)
        if worker:
            procs.start("worker", [sys.executable, "-m", "celery", "-A", "marketplace", "worker", "--loglevel",
                                   "INFO", "--queues", "celery,handlers", "--concurrency", "1",
                                   "--without-mingle", "--without-gossip"], env)
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, procs, timeout=60)
        log(f"api server: {base} up in {time.monotonic() - started:.1f} s "
            f"({'PostgreSQL ' + pg_name if pg_name else 'SQLite'}{', with a worker' if worker else ''})", flush=True)
        yield Server(base, tokens[0], tokens[1], procs)
    except BaseException:
        failed = True
        raise
    finally:
        procs.stop()
        if failed and procs.procs:
            print(procs.tails(40), file=sys.stderr)
        if pg_name and not keep:
            _recreate_pg(database, pg_name, drop_only=True)
        if not keep:
            shutil.rmtree(data, ignore_errors=True)
        else:
            log(f"kept {data}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help="also start a Celery worker (events, timers)")
    parser.add_argument("--keep", action="store_true", help="keep the data folder (and database) afterwards")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a COMMAND to run against the server is required")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # CI's time limit: still stop the servers
    try:
        with serve(worker=args.worker, keep=args.keep) as server:
            return subprocess.run(command, cwd=ROOT, env={**os.environ, **server.env()}).returncode
    except ServerFailed as exc:
        print(f"API SERVER FAILED: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
