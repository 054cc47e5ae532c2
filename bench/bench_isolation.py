"""Benchmark: what the web backstop costs — a run in a forked child (runtime.isolation) vs
the same run in-process.

    .venv/bin/python bench/bench_isolation.py [--runs N] [--ballast-mb M]

Runs ``runtime.execution.run_spec`` with an in-memory store, in-process and ``isolated``,
for a trivial handler and for one making 200 ctx calls (each a round trip to the parent
when isolated). ``--ballast-mb`` grows this process's heap first, as a web worker's is,
since fork copies the page tables. Prints medians and the overhead per run and per ctx call.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

from runtime.execution import run_spec  # noqa: E402
from runtime.stores import MemoryStore  # noqa: E402

TRIVIAL = """
function handle(ctx, input)
  return { ok = true, name = input.name }
end
"""
CALLS = """
function handle(ctx, input)
  for i = 1, 100 do
    ctx.cache.set("k" .. i, { i = i })
    ctx.cache.get("k" .. i)
  end
  return { ok = true, name = input.name }
end
"""
MANIFEST = {
    "permissions": ["log", "tenant.cache"],
    "handlers": {"handle": {"type": "rpc", "file": "main.lua", "function": "handle"}},
}


def run(source: str, store, isolated: bool) -> None:
    outcome = run_spec(
        manifest=MANIFEST, files={"main.lua": source}, handler="handle", input={"name": "bench"}, config={},
        instance_info={"id": 1, "name": "bench"}, store=store, devices={}, isolated=isolated,
    )
    assert outcome.ok, outcome.error


def median_ms(fn, runs: int) -> float:
    for _ in range(min(20, runs)):
        fn()
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--ballast-mb", type=int, default=0)
    args = parser.parse_args()
    ballast = [bytearray(1024 * 1024) for _ in range(args.ballast_mb)]  # touched: resident pages
    for block in ballast:
        block[::4096] = b"x" * len(block[::4096])
    store = MemoryStore()
    print(f"process RSS {rss_mb():.0f} MB, {args.runs} runs each")
    figures = {}
    for label, source in (("trivial handler", TRIVIAL), ("200 ctx calls", CALLS)):
        here = median_ms(lambda source=source: run(source, store, False), args.runs)
        there = median_ms(lambda source=source: run(source, store, True), args.runs)
        figures[label] = (here, there)
        print(f"{label:16s} in-process {here:7.3f} ms   isolated {there:7.3f} ms   overhead {there - here:7.3f} ms")
    (t_here, t_there), (c_here, c_there) = figures["trivial handler"], figures["200 ctx calls"]
    per_call = ((c_there - c_here) - (t_there - t_here)) / 200 * 1000
    print(f"per ctx call round trip to the parent: {per_call:.0f} µs")


if __name__ == "__main__":
    main()
