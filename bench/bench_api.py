"""Benchmark: the REST API's catalog list under gunicorn (2 sync workers) on PostgreSQL,
beside a bare DRF list of the same model in the same run, and the run list.

    .venv/bin/python bench/bench_api.py [--integrations 10000] [--runs 100000] [--seconds 8] [--rounds 3]

Uses its own database (BENCH_DB, default junction_bench_catalog) and Redis database
(BENCH_REDIS, default 12; see bench/benchdb.py).

1. Seeds 10,000 integrations over 20 organizations and 12 categories (one in five
   private, one in three with a published version), and 100,000 runs of one instance of
   the caller's organization.
2. Starts gunicorn with 2 workers on bench/bench_api_site.py: the site plus a bare
   ``ListAPIView`` + ``ModelSerializer`` (all fields) of Integration, at /bare/integrations/.
3. For each path, in alternating rounds of ``--seconds`` (so both meet the same load from
   whatever else runs on the machine): ``--clients`` threads send requests with a
   publisher's API token; requests/s, p50 and p99 latency over all rounds.
   - ``GET /bare/integrations/?page_size=50``: the yardstick;
   - ``GET /api/v1/integrations/?page_size=50``: the catalog as the caller sees it
     (visibility, category and organization slugs, latest version, icon and page URLs);
   - ``GET /api/v1/runs/?page_size=50`` over 100,000 runs (skipped, saying so, while the
     path answers 404: the runs endpoint is another branch of issue 11).
   Prints the ratio of the catalog list's throughput to the bare list's (target ≥ 0.7).
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("BENCH_DB", "junction_bench_catalog")
os.environ.setdefault("BENCH_REDIS", "redis://127.0.0.1:6379/12")

from benchdb import NAME, ROOT, percentile, prepare  # noqa: E402

VENV_BIN = Path(sys.executable).parent
ORGANIZATIONS = 20
CATEGORIES = 12


def seed(n_integrations: int, n_runs: int) -> str:
    """Rows through bulk_create (the services would take minutes for 10,000 integrations);
    returns the caller's API token."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from marketplace.choices import Role, RunStatus, Trigger, VersionState, Visibility
    from marketplace.models import Category, HandlerRun, Integration, IntegrationVersion, Membership, Organization
    from marketplace.services.installs import install_version
    from marketplace.services.publishing import publish_version
    from marketplace.services.tokens import create_api_token

    orgs = Organization.objects.bulk_create(
        [Organization(name=f"Org {i}", slug=f"org-{i}") for i in range(ORGANIZATIONS)])
    categories = Category.objects.bulk_create(
        [Category(name=f"Category {i}", slug=f"category-{i}", ordering=i) for i in range(CATEGORIES)])
    user = get_user_model().objects.create_user(username="bench", password=None)
    Membership.objects.create(user=user, organization=orgs[0], role=Role.PUBLISHER)
    integrations = Integration.objects.bulk_create([
        Integration(
            owner=orgs[i % ORGANIZATIONS], name=f"Integration {i:05d}", slug=f"integration-{i:05d}",
            summary=f"Connects thing {i} to the ERP", description="A longer description. " * 8,
            category=categories[i % CATEGORIES] if i % 7 else None,
            visibility=Visibility.PRIVATE if i % 5 == 0 else Visibility.PUBLIC,
            icon=f"icons/integration-{i:05d}/icon.png" if i % 2 else "",
            icon_thumbnail=f"icons/integration-{i:05d}/thumb.png" if i % 2 else "",
        )
        for i in range(n_integrations)
    ], batch_size=2000)
    now = timezone.now()
    IntegrationVersion.objects.bulk_create([
        IntegrationVersion(integration=integration, number=1, state=VersionState.PUBLISHED, available=True,
                           manifest={}, files={}, checksum="0" * 64, notes="bench", published_at=now)
        for integration in integrations[::3]
    ], batch_size=2000)

    # The runs' instance: a real published version installed through the services.
    owned = Integration.objects.create(owner=orgs[0], name="Runner", slug="runner")
    draft = IntegrationVersion.objects.create(integration=owned, manifest={
        "name": "runner", "title": "Runner", "configSchema": {"type": "object", "properties": {}},
        "resources": {}, "permissions": ["log"],
        "handlers": {"tick": {"type": "rpc", "file": "main.lua", "function": "tick"}},
    }, files={"main.lua": "function tick(ctx, input)\n  return { ok = true }\nend\n"})
    instance = install_version(version=publish_version(draft=draft, notes="bench"), organization=orgs[0],
                               name="Runner", config={}, bindings={})
    batch = 10_000
    for start in range(0, n_runs, batch):
        HandlerRun.objects.bulk_create([
            HandlerRun(instance=instance, handler="tick", trigger=Trigger.RPC,
                       status=RunStatus.FAILED if i % 25 == 0 else RunStatus.SUCCEEDED,
                       input={"n": i}, result={"ok": True}, logs=[{"level": "info", "message": "beat"}],
                       duration_ms=20, started_at=now, finished_at=now)
            for i in range(start, min(n_runs, start + batch))
        ])
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    _, token = create_api_token(user=user, name="bench")
    return token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env: dict, port: int) -> subprocess.Popen:
    server_env = {
        **os.environ, **env,
        # Throttling stays on (it is part of each request's cost), at a rate the bench never reaches.
        "JUNCTION_API_THROTTLE_USER": "100000000/min",
    }
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "--workers", "2", "--bind", f"127.0.0.1:{port}",
         "--pythonpath", f"{ROOT},{ROOT / 'bench'}", "--log-level", "warning", "bench_api_site:application"],
        env=server_env, cwd=ROOT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            status, _ = request(port, "/api/v1/categories/", None)
            if status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    stop(proc)
    raise SystemExit("gunicorn did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def request(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def cpu_seconds(pids: set[int]) -> dict[str, float]:
    """CPU seconds used so far by gunicorn's workers and by the PostgreSQL backends serving
    the benchmark's database (the workers keep their connections: DB_CONN_MAX_AGE), from
    /proc; other databases' backends on a shared machine are not counted."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"workers": 0.0, "postgres": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / tick
        if int(stat.parent.name) in pids:
            used["workers"] += own
        elif cmdline.startswith(b"postgres: ") and f" {NAME} ".encode() in cmdline:
            used["postgres"] += own
    return used


def worker_pids(proc: subprocess.Popen) -> set[int]:
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return {int(pid) for pid in children.read_text().split()} if children.exists() else set()


def load(port: int, path: str, token: str, seconds: float, clients: int) -> tuple[int, list[float], set[int]]:
    """``clients`` threads requesting ``path`` for ``seconds``: (requests, latencies, statuses)."""
    latencies: list[float] = []
    statuses: set[int] = set()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        mine, seen = [], set()
        while time.monotonic() < deadline:
            t = time.perf_counter()
            status, _ = request(port, path, token)
            mine.append(time.perf_counter() - t)
            seen.add(status)
        with lock:
            latencies.extend(mine)
            statuses.update(seen)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies, statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--integrations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    args = parser.parse_args()

    env = prepare()
    t = time.monotonic()
    token = seed(args.integrations, args.runs)
    print(f"seeded {args.integrations:,} integrations and {args.runs:,} runs in {time.monotonic() - t:.0f} s")
    port = free_port()
    proc = start_gunicorn(env, port)
    paths = {
        "bare": "/bare/integrations/?page_size=50",
        "catalog": "/api/v1/integrations/?page_size=50",
        "runs": "/api/v1/runs/?page_size=50",
    }
    try:
        status, body = request(port, paths["runs"], token)
        if status == 404:
            print(f"runs: skipped — GET {paths['runs']} answers 404 (the runs endpoint is not on this branch yet)")
            del paths["runs"]
        elif status != 200:
            raise SystemExit(f"GET {paths['runs']} answered {status}: {body[:300]!r}")
        for path in paths.values():  # warm up each worker and path
            status, body = request(port, path, token)
            assert status == 200, (path, status, body[:300])
            load(port, path, token, 1.0, args.clients)
        results: dict[str, tuple[int, list[float], float]] = {name: (0, [], 0.0) for name in paths}
        per_round: dict[str, list[float]] = {name: [] for name in paths}
        cpu: dict[str, dict[str, float]] = {name: {"workers": 0.0, "postgres": 0.0} for name in paths}
        pids = worker_pids(proc)
        for _ in range(args.rounds):
            for name, path in paths.items():
                before = cpu_seconds(pids)
                count, latencies, statuses = load(port, path, token, args.seconds, args.clients)
                after = cpu_seconds(pids)
                for group in cpu[name]:
                    cpu[name][group] += (after[group] - before[group]) / count
                assert statuses == {200}, (path, statuses)
                total, all_latencies, seconds = results[name]
                results[name] = (total + count, all_latencies + latencies, seconds + args.seconds)
                per_round[name].append(count / args.seconds)
    finally:
        stop(proc)

    print(f"\ngunicorn, 2 sync workers; {args.clients} clients; {args.rounds} rounds of {args.seconds:.0f} s per path")
    print(f"{'path':44} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11} {'(PG)':>6}   rounds (req/s)")
    rates = {}
    for name, (count, latencies, seconds) in results.items():
        rates[name] = count / seconds
        rounds = ", ".join(f"{r:.1f}" for r in per_round[name])
        worker_ms = cpu[name]["workers"] / args.rounds * 1000
        pg_ms = cpu[name]["postgres"] / args.rounds * 1000
        print(f"GET {paths[name]:40} {rates[name]:7.1f} {percentile(latencies, 50) * 1000:8.1f} "
              f"{percentile(latencies, 99) * 1000:8.1f} {worker_ms:11.1f} {pg_ms:6.1f}   {rounds}")
    ratio = rates["catalog"] / rates["bare"]
    median_ratio = statistics.median(c / b for c, b in zip(per_round["catalog"], per_round["bare"]))
    print(f"\ncatalog / bare throughput: {ratio:.2f} (median of rounds {median_ratio:.2f}; target >= 0.7)")
    cost = lambda name: cpu[name]["workers"] + cpu[name]["postgres"]  # noqa: E731
    print(f"bare / catalog CPU per request (gunicorn workers + PostgreSQL): {cost('bare') / cost('catalog'):.2f} "
          "(what the throughput ratio tends to when the machine is not shared)")


if __name__ == "__main__":
    main()
