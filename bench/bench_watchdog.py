"""Benchmark: what the worker's per-run watchdog (runtime.watchdog) costs a run.

    .venv/bin/python bench/bench_watchdog.py [--pairs 200000] [--runs 5000]

Prints, per run:
- arm + disarm through ``watchdog.watching`` (what ``execute_run`` does in a worker task),
  with the watchdog's thread alive and runs following one another as in a busy worker;
- the same call where no watchdog watches (web process, tests): the cost of the check;
- a trivial handler run in the sandbox (``run_spec``, no database), for scale;
- how many times the watchdog's thread woke up, per run.
No database or broker is needed; the watchdog never fires here.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

from runtime import watchdog  # noqa: E402
from runtime.execution import run_spec  # noqa: E402
from runtime.limits import platform_limits  # noqa: E402
from runtime.stores import MemoryStore  # noqa: E402

LUA = "function h(ctx, input) return { ok = true, n = input.n } end"
MANIFEST = {"name": "bench", "permissions": [], "handlers": {"h": {"type": "event", "file": "main.lua",
                                                                   "function": "h"}}}


def per_call_us(function, count: int) -> float:
    started = time.perf_counter()
    for index in range(count):
        function(index)
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5000)
    options = parser.parse_args()

    limits = platform_limits()

    def watched(index: int) -> None:
        with watchdog.watching(run_id=index, starts=1, timeout_ms=limits.timeout_ms):
            pass

    def run(index: int) -> None:
        run_spec(manifest=MANIFEST, files={"main.lua": LUA}, handler="h", input={"n": index}, config={},
                 instance_info={"id": 1}, store=MemoryStore(), devices={}, limits=limits)

    unwatched_us = per_call_us(watched, options.pairs)
    dog = watchdog.Watchdog(kill=lambda: sys.exit("the watchdog fired during the benchmark"))
    wakes = [0]
    original_wait = dog._cond.wait

    def counting_wait(timeout=None):
        wakes[0] += 1
        return original_wait(timeout)

    dog._cond.wait = counting_wait
    watchdog.install(dog)
    with watchdog.on_duty():
        watched_us = per_call_us(watched, options.pairs)
        run_us = per_call_us(run, options.runs)
        wakes_before = wakes[0]
        watched_run_us = per_call_us(lambda index: (watched(index), run(index)), options.runs)
        wakes_in_runs = wakes[0] - wakes_before
    dog.stop()
    watchdog.uninstall()

    print(f"arm + disarm (watchdog installed, task path): {watched_us:8.2f} µs per run")
    print(f"check only (no watchdog: web, tests):         {unwatched_us:8.2f} µs per run")
    print(f"trivial handler run in the sandbox:           {run_us:8.2f} µs per run")
    print(f"  the same, watched:                          {watched_run_us:8.2f} µs per run")
    print(f"watchdog cost / trivial run:                  {watched_us / run_us * 100:8.2f} %")
    print(f"watchdog thread wake-ups over {options.runs} runs:    {wakes_in_runs}")


if __name__ == "__main__":
    main()
