"""Webhook throttling under gunicorn: is the per-instance bucket shared by every worker
process, and what does it cost a post?

    .venv/bin/python bench/bench_webhook_throttle.py [--db sqlite|postgres] [--workers 2]
                                                     [--posts 1000] [--clients 8]

``--db sqlite`` (the embedded default) uses a throw-away data directory; ``--db postgres``
a throw-away database on BENCH_PG (``BENCH_DB``, default junction_bench_webhooks). Either
way the broker is the filesystem one in a temporary folder (no worker runs: the runs stay
queued, and the queued-runs cap is off so that it refuses nothing).

1. Sharing: gunicorn with ``--workers`` processes, rate 1/s and burst 200; ``--posts``
   posts from ``--clients`` threads at one instance. One shared bucket lets about 200 pass
   (plus 1 a second); a bucket per process would let ``workers`` × 200 pass.
2. Cost: the same posts with throttling off (rate 0) and on (a rate never reached):
   posts/s and p50/p99 latency of the accepted posts.
3. The take alone, in this process: 2,000 ``throttle.take`` calls (one UPDATE each), mean.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchdb import percentile  # noqa: E402  (bench/ is on sys.path when run as a script)

LUA = "function on_ping(ctx, input) return input.payload end\n"
HANDLERS = {"onPing": {"type": "event", "event": "ping", "file": "main.lua", "function": "on_ping"}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(db: str, data_dir: Path) -> dict:
    env = {
        "JUNCTION_DATA_DIR": str(data_dir), "CELERY_BROKER_URL": "filesystem://", "DJANGO_SETTINGS_MODULE":
        "marketplace.settings", "LOG_LEVEL": "ERROR", "DEBUG": "0", "JUNCTION_INSTANCE_MAX_QUEUED_RUNS": "0",
    }
    if db == "postgres":
        import psycopg

        server = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
        name = os.environ.get("BENCH_DB", "junction_bench_webhooks")
        if name in {"junction", "test_junction"}:
            raise SystemExit("refusing to benchmark on the development or test database")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        env["DATABASE_URL"] = f"{server}/{name}"
    else:
        env.pop("DATABASE_URL", None)
        os.environ.pop("DATABASE_URL", None)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return env


def make_instance():
    from marketplace.models import Integration, IntegrationVersion, Organization
    from marketplace.services.installs import install_version
    from marketplace.services.publishing import publish_version

    org = Organization.objects.create(name="Bench", slug="bench")
    integration = Integration.objects.create(owner=org, name="Hooks", slug="hooks")
    manifest = {"name": "hooks", "title": "Hooks", "permissions": ["log"], "handlers": HANDLERS}
    draft = IntegrationVersion.objects.create(integration=integration, manifest=manifest, files={"main.lua": LUA})
    version = publish_version(draft=draft, notes="bench")
    return install_version(version=version, organization=org, name="hooks", config={}, bindings={})


class Server:
    def __init__(self, env: dict, workers: int, rate: float, burst: int):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "marketplace.wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--log-level", "warning"],
            cwd=ROOT, env={**os.environ, **env, "JUNCTION_WEBHOOK_RATE": str(rate), "JUNCTION_WEBHOOK_BURST": str(burst),
                           "ALLOWED_HOSTS": "127.0.0.1"},
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/hooks/x/y", data=b"{}", timeout=2)
            except urllib.error.HTTPError:
                return  # 404: up
            except OSError:
                time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def fire(url: str, posts: int, clients: int) -> tuple[dict[int, int], list[float], float]:
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    left = iter(range(posts))

    def client():
        while True:
            with lock:
                if next(left, None) is None:
                    return
            request = urllib.request.Request(url, data=b'{"n": 1}', headers={"Content-Type": "application/json"})
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            elapsed = time.perf_counter() - start
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 202:
                    latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses, latencies, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="junction-bench-hooks-"))
    try:
        env = prepare(args.db, data_dir)
        instance = make_instance()
        from runtime.models import WebhookBucket

        def url() -> str:
            return f"http://127.0.0.1:{server.port}/hooks/{instance.webhook_token}/ping"

        print(f"database: {args.db}; gunicorn --workers {args.workers}; {args.posts} posts from {args.clients} clients")
        server = Server(env, args.workers, rate=1, burst=200)
        try:
            statuses, _, seconds = fire(url(), args.posts, args.clients)
        finally:
            server.stop()
        print(f"1. rate 1/s, burst 200: accepted {statuses.get(202, 0)}, throttled {statuses.get(429, 0)}, "
              f"other {sum(n for s, n in statuses.items() if s not in (202, 429))} in {seconds:.1f} s "
              f"(one shared bucket: at most {200 + int(seconds) + 1}; one per process: {200 * args.workers})")

        for label, rate in (("off (rate 0)", 0), ("on (rate 1e9)", 1e9)):
            WebhookBucket.objects.all().delete()
            server = Server(env, args.workers, rate=rate, burst=200)
            try:
                statuses, latencies, seconds = fire(url(), args.posts, args.clients)
            finally:
                server.stop()
            latencies.sort()
            print(f"2. throttling {label}: {statuses.get(202, 0) / seconds:.0f} posts/s; accepted "
                  f"{statuses.get(202, 0)}/{args.posts}; p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, 99) * 1000:.1f} ms")
        from django.conf import settings

        from runtime import throttle

        settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 1e9, 200
        began = time.perf_counter()
        for _ in range(2000):
            throttle.take(instance.pk)
        print(f"3. throttle.take alone: {(time.perf_counter() - began) / 2000 * 1e6:.0f} µs a post")
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
