"""Benchmark: events POSTed one by one to the webhook (gunicorn, real HTTP), with the ingress
window off (one message per run, as before) and on, next to Celery's no-op rate measured just
before on the same set-up.

    .venv/bin/python bench/bench_ingress.py [--events 3000] [--windows 0 20 50] [--rates 0 200] [--repeat 2]

Uses its own database and Redis db (bench/benchdb.py: BENCH_DB, BENCH_REDIS). gunicorn
(``--web-workers`` x ``--web-threads``, gthread; the window lives in each of its processes)
takes the posts of ``--posters`` client threads on keep-alive connections, paced to
``--rates`` posts/s in all (0: as fast as they can). A worker is ``celery worker -Q
handlers`` (prefork, ``--concurrency``, the production settings). Two measurements per window:
- drain: the events are posted with no worker running, so the queue holds the messages
  exactly as the web processes sent them; then a worker drains it, timed from the first run
  started to the last finished (as bench_throughput.py measures). Its ratio to the no-op
  rate is the worker's capacity for events posted one by one at that posting rate;
- live: the posters and the worker at once; runs/s from the first post to the last run
  finished, and post -> start (the moment the client sent the POST to the run's
  ``started_at``, same machine clock) at p50 / p99 / max over every run.
The 2 cores are shared by gunicorn, the posters, the worker, PostgreSQL and Redis: live, the
posting side takes much of the CPU the worker would use.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

from bench_throughput import LUA, bench_noop, start_worker, stop
from benchdb import BROKER, ROOT, make_version, percentile, prepare, purge_queues


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(env: dict, port: int, workers: int, threads: int, window_ms: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "gunicorn", "marketplace.wsgi", "--bind", f"127.0.0.1:{port}",
               "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
               "--keep-alive", "30", "--log-level", "warning"]
    # The queued-runs cap raised above the benchmark's events (the drain case queues them
    # all before a worker starts); its query still runs on every post.
    # The per-instance webhook throttle is off: this measures what is behind it.
    window = {"JUNCTION_INGRESS_WINDOW_MS": str(window_ms), "JUNCTION_INSTANCE_MAX_QUEUED_RUNS": "1000000",
              "JUNCTION_WEBHOOK_RATE": "0"}
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env, **window}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_web(port: int, token: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited at start")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            # An event no handler listens to: 202, nothing queued.
            conn.request("POST", f"/hooks/{token}/warmup", body=b"{}", headers={"Content-Type": "application/json"})
            if conn.getresponse().status == 202:
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("gunicorn did not answer")


def post_all(port: int, token: str, events: int, posters: int, rate: float) -> tuple[dict[int, float], float]:
    """POST ``events`` events from ``posters`` threads; returns run id → wall time the POST
    was sent, and the seconds the posting took."""
    sent: dict[int, float] = {}
    failures: list[str] = []
    start = time.monotonic() + 0.2

    def poster(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for n in range(index, events, posters):
            if rate:
                delay = start + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            body = json.dumps({"n": n}).encode()
            at = time.time()
            conn.request("POST", f"/hooks/{token}/bench", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            data = response.read()
            if response.status != 202:
                failures.append(f"{response.status} {data[:200]!r}")
                continue
            for run_id in json.loads(data)["runs"]:
                sent[run_id] = at
        conn.close()

    threads = [threading.Thread(target=poster, args=(i,)) for i in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"    {len(failures)} posts refused, e.g. {failures[0]}")
    return sent, time.monotonic() - start


def post_in_threads(instance, events: int, posters: int, rate: float) -> tuple[dict[int, float], float]:
    """``post_all`` without HTTP: threads of this process call ``post_event`` (what the
    webhook calls), gathering in this process's window."""
    from django.db import connection

    from runtime.events import post_event

    sent: dict[int, float] = {}
    start = time.monotonic() + 0.2

    def poster(index: int) -> None:
        try:
            for n in range(index, events, posters):
                if rate:
                    delay = start + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                at = time.time()
                for run in post_event(instance=instance, event="bench", payload={"n": n}):
                    sent[run.pk] = at
        finally:
            connection.close()

    threads = [threading.Thread(target=poster, args=(i,)) for i in range(posters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent, time.monotonic() - start


def start_web_and_post(env, instance, args, window_ms: int, rate: float, worker: bool):
    """Start gunicorn (unless posting in threads) and the worker if ``worker``, post every
    event, return (sent, posting seconds, the processes still running)."""
    from django.conf import settings

    from runtime import ingress

    procs = []
    try:
        if args.via == "http":
            port = free_port()
            procs.append(start_web(env, port, args.web_workers, args.web_threads, window_ms))
            wait_web(port, instance.webhook_token, procs[0])
        if worker:
            procs.append(start_worker(env, args.concurrency))
            time.sleep(2)  # the worker's pool up before the first post
        if args.via == "http":
            sent, posting = post_all(port, instance.webhook_token, args.events, args.posters, rate)
        else:
            settings.JUNCTION_INGRESS_WINDOW_MS = window_ms
            sent, posting = post_in_threads(instance, args.events, args.posters, rate)
            ingress.window.flush()
    except BaseException:
        for proc in procs:
            stop(proc)
        raise
    return sent, posting, procs


def wait_finished(deadline_s: float = 600) -> None:
    from marketplace.choices import RunStatus
    from marketplace.models import HandlerRun

    pending = HandlerRun.objects.exclude(status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED])
    deadline = time.monotonic() + deadline_s
    while pending.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def statuses() -> dict:
    from django.db.models import Count

    from marketplace.models import HandlerRun

    return dict(HandlerRun.objects.values_list("status").annotate(n=Count("pk")))


def bench_live(app, env, instance, args, window_ms: int, rate: float) -> dict:
    """Posters and the worker at once: runs/s from the first post to the last run
    finished, and post → start for every run."""
    from django.db.models import Max

    from marketplace.models import HandlerRun

    purge_queues(app)
    HandlerRun.objects.all().delete()
    sent, posting, procs = start_web_and_post(env, instance, args, window_ms, rate, worker=True)
    try:
        wait_finished()
    finally:
        for proc in procs:
            stop(proc)
    rows = HandlerRun.objects.filter(pk__in=list(sent)).values_list("pk", "started_at")
    latencies = [1000 * (started.timestamp() - sent[pk]) for pk, started in rows if started]
    end = HandlerRun.objects.aggregate(end=Max("finished_at"))["end"]
    elapsed = end.timestamp() - min(sent.values())
    return {"runs": len(sent), "posted_per_s": len(sent) / posting, "runs_per_s": len(sent) / elapsed,
            "p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies),
            "statuses": statuses()}


def bench_drain(app, env, redis, instance, args, window_ms: int, rate: float) -> dict:
    """The worker's side alone: the events are posted with no worker running, so the queue
    holds the messages exactly as the posting processes sent them; then a worker drains it,
    timed from the first run started to the last finished (as bench_throughput measures)."""
    from django.db.models import Max, Min

    from marketplace.models import HandlerRun

    purge_queues(app)
    HandlerRun.objects.all().delete()
    sent, posting, procs = start_web_and_post(env, instance, args, window_ms, rate, worker=False)
    for proc in procs:
        stop(proc)  # a window still open is sent at exit
    messages = redis.llen("handlers")
    worker = start_worker(env, args.concurrency)
    try:
        wait_finished()
    finally:
        stop(worker)
    agg = HandlerRun.objects.aggregate(start=Min("started_at"), end=Max("finished_at"))
    elapsed = (agg["end"] - agg["start"]).total_seconds()
    return {"runs": len(sent), "posted_per_s": len(sent) / posting, "runs_per_s": len(sent) / elapsed,
            "messages": messages, "statuses": statuses()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--noops", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool processes")
    parser.add_argument("--posters", type=int, default=8, help="client threads posting")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=4)
    parser.add_argument("--windows", type=int, nargs="+", default=[0, 20],
                        help="JUNCTION_INGRESS_WINDOW_MS values; 0 is the window off")
    parser.add_argument("--rates", type=float, nargs="+", default=[0],
                        help="offered posts/s in all; 0: as fast as the posters can")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--via", choices=["http", "threads"], default="http",
                        help="http: POST to gunicorn; threads: call post_event in this process (one window)")
    args = parser.parse_args()

    env = prepare()
    import redis as redis_lib
    from django.conf import settings

    from marketplace.celery import app
    from marketplace.services.installs import install_version

    org, version = make_version(
        {"onEvent": {"type": "event", "event": "bench", "file": "main.lua", "function": "handle"}}, {"main.lua": LUA}
    )
    instance = install_version(version=version, organization=org, name="bench", config={}, bindings={})
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 1_000_000  # as start_web's, for posting in threads
    redis = redis_lib.Redis.from_url(BROKER)
    print(f"CPU cores: {os.cpu_count()}; load average {os.getloadavg()[0]:.1f}; broker {BROKER}; "
          f"database {env['DATABASE_URL']}")
    web = f"gunicorn {args.web_workers} workers x {args.web_threads} threads" if args.via == "http" else "in-process"
    print(f"posting: {web}; {args.posters} posters; "
          f"worker concurrency {args.concurrency}; window size {settings.JUNCTION_INGRESS_WINDOW_RUNS} runs")
    for rate in args.rates:
        offered = f"{rate:.0f}/s" if rate else "max"
        for _ in range(args.repeat):
            # The no-op rate next to each set: the machine's load moves between sets.
            noop = bench_noop(app, redis, env, args.noops, args.concurrency)
            print(f"celery no-op task, concurrency {args.concurrency}: {noop:6.0f} tasks/s ({args.noops} tasks); "
                  f"load average {os.getloadavg()[0]:.1f}")
            for window_ms in args.windows:
                label = f"window {window_ms} ms" if window_ms else "window off"
                info = bench_drain(app, env, redis, instance, args, window_ms, rate)
                print(f"  drain {label:13s} posted at {info['posted_per_s']:4.0f}/s (offered {offered}): "
                      f"{info['runs']} runs in {info['messages']} messages; worker {info['runs_per_s']:5.0f} runs/s "
                      f"= {info['runs_per_s'] / noop:.2f} x no-op ({info['statuses']})")
            for window_ms in args.windows:
                label = f"window {window_ms} ms" if window_ms else "window off"
                info = bench_live(app, env, instance, args, window_ms, rate)
                print(f"  live  {label:13s} posted at {info['posted_per_s']:4.0f}/s (offered {offered}): "
                      f"runs {info['runs_per_s']:5.0f}/s = {info['runs_per_s'] / noop:.2f} x no-op; "
                      f"post -> start p50 {info['p50']:5.0f} ms, p99 {info['p99']:5.0f} ms, max {info['max']:5.0f} ms "
                      f"({info['statuses']})")
    purge_queues(app)


if __name__ == "__main__":
    main()
