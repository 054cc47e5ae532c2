"""Benchmark: a sandboxed run of a trivial handler vs the same code in bare lupa.

    .venv/bin/python bench/bench_sandbox.py [--runs N]

Both sides create a fresh ``lupa.lua54.LuaRuntime`` per run. The sandboxed side is the
whole ``runtime.execution.run_spec`` path (limits, ctx with an in-memory store, prelude,
hook, argument/result conversion) minus the database. Prints medians, the ratio (target
≤ 4) and where the sandboxed time goes, phase by phase.
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

import lupa.lua54 as lupa  # noqa: E402

from runtime.ctx import Ctx  # noqa: E402
from runtime.execution import run_spec  # noqa: E402
from runtime.limits import platform_limits  # noqa: E402
from runtime.sandbox import run_lua  # noqa: E402
from runtime.stores import MemoryStore  # noqa: E402

SOURCE = """
function handle(ctx, input)
  local total = 0
  for i = 1, 10 do total = total + i end
  return { ok = true, total = total, name = input.name }
end
"""
MANIFEST = {
    "permissions": ["log"],
    "handlers": {"handle": {"type": "timer", "file": "main.lua", "function": "handle", "schedule": {"every": "1m"}}},
}
INPUT = {"name": "bench"}


def bare() -> dict:
    lua = lupa.LuaRuntime()
    lua.execute(SOURCE)
    result = lua.globals().handle(None, lua.table_from(INPUT))
    return {"ok": result["ok"], "total": result["total"], "name": result["name"]}


def sandboxed(store) -> dict:
    outcome = run_spec(
        manifest=MANIFEST, files={"main.lua": SOURCE}, handler="handle", input=INPUT, config={},
        instance_info={"id": 1, "name": "bench"}, store=store, devices={},
    )
    assert outcome.ok, outcome.error
    return outcome.result


def medians_us(fns, runs: int) -> list[float]:
    """Median µs of each function, measured interleaved so machine load affects all alike."""
    for _ in range(min(200, runs)):
        for fn in fns:
            fn()
    samples = [[] for _ in fns]
    for _ in range(runs):
        for fn, bucket in zip(fns, samples):
            t = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - t)
    return [statistics.median(bucket) * 1e6 for bucket in samples]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    store = MemoryStore()
    assert bare() == sandboxed(store) == {"ok": True, "total": 55, "name": "bench"}

    # Measured one after the other (each warm on its own: the conservative figure), then
    # interleaved run by run (both see the same machine load).
    (bare_us,) = medians_us([bare], args.runs)
    (sandbox_us,) = medians_us([lambda: sandboxed(store)], args.runs)
    print(f"bare lupa (fresh LuaRuntime)  median {bare_us:8.1f} µs")
    print(f"sandboxed run_spec            median {sandbox_us:8.1f} µs")
    print(f"ratio                         {sandbox_us / bare_us:8.2f}  (target ≤ 4)")
    bare_i, sandbox_i = medians_us([bare, lambda: sandboxed(store)], args.runs)
    print(f"interleaved: bare {bare_i:.1f} µs, sandboxed {sandbox_i:.1f} µs, ratio {sandbox_i / bare_i:.2f}")

    # Where the time goes: run_lua's own phase timings, medians over the runs.
    limits = platform_limits()
    phases: dict[str, list[float]] = {}
    for _ in range(args.runs):
        ctx = Ctx(manifest=MANIFEST, config={}, instance_info={"id": 1}, store=store, devices={}, limits=limits)
        t = time.perf_counter()
        outcome = run_lua(source={"main.lua": SOURCE}, file="main.lua", function="handle", input=INPUT,
                          host=ctx, limits=limits)
        total = time.perf_counter() - t
        for name, seconds in outcome.phases.items():
            phases.setdefault(name, []).append(seconds)
        phases.setdefault("run_lua total", []).append(total)
    print("\nphases of run_lua (median µs):")
    labels = {
        "runtime": "new LuaRuntime",
        "prelude_load": "load prelude bytecode",
        "setup": "build env/ctx, convert config+input",
        "run": "compile handler + hook + run + copy result",
        "result": "result to Python + JSON size check",
        "close": "close the Lua state",
    }
    for name, values in phases.items():
        print(f"  {labels.get(name, name):45s} {statistics.median(values) * 1e6:8.1f}")


if __name__ == "__main__":
    main()
