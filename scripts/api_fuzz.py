"""Fuzz the REST API with schemathesis against a live throw-away server (``api_server.serve``):
once as the demo's publisher and once as a customer of another organization, each with its
own personal token, every operation of ``/api/schema/``.

    python scripts/api_fuzz.py [--seconds 60] [--examples 25] [--workers 2] [--keep]
    API_FUZZ_SECONDS / API_FUZZ_EXAMPLES override the defaults (CI keeps them small).

Checks: no 5xx (not_a_server_error), every response's body matches the schema
(response_schema_conformance) and its status is one the schema lists for the operation
(status_code_conformance). Each run has a fixed time budget (schemathesis repeats its
phases until ``--seconds`` is spent), so the whole step takes about 40 s of setup plus
twice that. Deleting a token is left out: the fuzzer would revoke the token it
authenticates with and spend the rest of its budget on 401s. Everything else, DELETE
included, is fair game on the throw-away database.

Exits 0 when both runs passed, 1 otherwise; schemathesis's reports (JUnit XML and a
pytest file reproducing each failure) go to ``--report-dir``.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from api_server import ROOT, ServerFailed, serve

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance"
# The caller's own credentials: see the module's docstring.
EXCLUDED_OPERATIONS = ["tokens_destroy"]


def fuzz(base: str, token: str, who: str, args: argparse.Namespace) -> int:
    # Run inside the report folder: schemathesis keeps its crash cache (.schemathesis/) in the
    # current directory, and a re-run replays what failed last time first.
    report_dir = (Path(args.report_dir) / who).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "run", f"{base}/api/schema/?format=json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--max-examples", str(args.examples),
        "--max-time", str(args.seconds),
        "--workers", str(args.workers),
        "--request-timeout", "30",
        "--continue-on-failure",
        "--suppress-health-check", "all",  # a slow shared CI box is not a finding
        "--seed", str(args.seed),
        "--report", "junit,pytest",
        "--report-dir", str(report_dir),
        "--output-sanitize", "true",
    ]
    for operation_id in EXCLUDED_OPERATIONS:
        command += ["--exclude-operation-id", operation_id]
    print(f"=== schemathesis as the {who} ({args.seconds} s, ≤ {args.examples} examples per operation and phase) ===",
          flush=True)
    started = time.monotonic()
    # A hard stop well past the budget: a hung request must not hold CI until its global limit.
    try:
        code = subprocess.run(command, cwd=report_dir, env={**os.environ, "NO_COLOR": "1"},
                              timeout=args.seconds * 2 + 120).returncode
    except subprocess.TimeoutExpired:
        print(f"schemathesis as the {who} did not finish in time", file=sys.stderr)
        return 1
    print(f"schemathesis as the {who}: exit {code} in {time.monotonic() - started:.0f} s", flush=True)
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("API_FUZZ_SECONDS", 60)),
                        help="time budget of each of the two runs")
    parser.add_argument("--examples", type=int, default=int(os.environ.get("API_FUZZ_EXAMPLES", 25)),
                        help="most examples per operation in each phase")
    parser.add_argument("--workers", type=int, default=2, help="schemathesis's concurrent workers")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("API_FUZZ_SEED", time.time())),
                        help="random seed (printed, to reproduce a run)")
    parser.add_argument("--report-dir", default=os.environ.get("API_FUZZ_REPORT_DIR", str(ROOT / "var" / "api-fuzz")))
    parser.add_argument("--keep", action="store_true", help="keep the server's data folder (and database)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # CI's time limit: still stop the server
    print(f"seed {args.seed}", flush=True)
    try:
        with serve(keep=args.keep) as server:
            results = {who: fuzz(server.base, token, who, args)
                       for who, token in (("publisher", server.publisher_token), ("customer", server.customer_token))}
    except ServerFailed as exc:
        print(f"API SERVER FAILED: {exc}", file=sys.stderr)
        return 1
    failed = [who for who, code in results.items() if code]
    if failed:
        print(f"API FUZZ FAILED as: {', '.join(failed)} (reports in {args.report_dir})", file=sys.stderr)
        return 1
    print("API fuzz passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
