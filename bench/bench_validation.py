"""Benchmark: how long package validation takes on hostile Lua and manifests.

    .venv/bin/python bench/bench_validation.py

For each input prints the time Lua's compiler and the static checker (luaparser) take with
no deadline, then the time ``validate_content`` takes with the platform's budgets
(JUNCTION_LUA_COMPILE_MAX_MS, JUNCTION_LUA_STATIC_MAX_MS) and the codes it reports. The
unbounded times are what a hostile package cost before the budgets; the last column must
stay near the budgets whatever the input.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "marketplace.settings")

import django  # noqa: E402

django.setup()

from marketplace.packaging.lua import OutOfTime, ParserUnavailable, analyze, compile_error  # noqa: E402
from marketplace.packaging.validation import validate_content  # noqa: E402

GOOD = (Path(__file__).resolve().parent.parent / "tests/packaging/fixtures/good/printer-sync/main.lua").read_text()
MANIFEST = {"name": "bench", "permissions": ["log"],
            "handlers": {"sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "5m"}}}}
HANDLER = 'function sync(ctx, input)\n  ctx.log.info("tick")\n  return { ok = true }\nend\n'

INPUTS = {
    "ordinary code, 31 kB (no permissions)": GOOD * 20,
    "40,000 `and` in one expression": "return a" + " and a" * 40_000,
    "1,000 lines of 60 nested parentheses": ("x = " + "(" * 60 + "1" + ")" * 60 + "\n") * 1000,
    "40,000 `+` in one expression": "return 1" + " + 1" * 40_000,
    "a table of 40,000 numbers": "return {" + ",".join(map(str, range(40_000))) + "}",
}


def timed(function, *args):
    start = time.perf_counter()
    try:
        function(*args)
        outcome = "ok"
    except (OutOfTime, ParserUnavailable) as exc:
        outcome = type(exc).__name__
    return (time.perf_counter() - start) * 1000, outcome


def main() -> None:
    print(f"{'input':40} {'bytes':>8} {'compile ms':>11} {'luaparser ms':>13} {'validation ms':>14}  codes")
    for name, source in INPUTS.items():
        compile_ms, _ = timed(compile_error, source, "main.lua")
        parse_ms, parsed = timed(analyze, source, "main.lua")
        start = time.perf_counter()
        report = validate_content(MANIFEST, {"main.lua": HANDLER + source})
        total_ms = (time.perf_counter() - start) * 1000
        print(f"{name:40} {len(source):8,} {compile_ms:11,.0f} {parse_ms:13,.0f} {total_ms:14,.0f}  "
              f"{','.join(sorted(set(report.codes()))) or '-'}" + ("" if parsed == "ok" else f"  (luaparser: {parsed})"))


if __name__ == "__main__":
    main()
