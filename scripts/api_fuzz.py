"""Fuzz the REST API with schemathesis against a live throw-away server (``api_server.serve``):
once as the demo's publisher and once as a customer of another organization, each with its
own personal token, every operation of ``/api/schema/``.

    python scripts/api_fuzz.py [--seconds 90] [--examples 25] [--seed N] [--keep]
    API_FUZZ_SECONDS / API_FUZZ_EXAMPLES override the defaults (CI keeps them small).

Checks: no 5xx (not_a_server_error), every response's body matches the schema
(response_schema_conformance) and its status is one the schema lists for the operation
(status_code_conformance). The two runs go side by side, each with a fixed time budget
(schemathesis repeats its phases until ``--seconds`` is spent), so the whole step takes
about 40 s of setup plus ``--seconds``. Deleting a token is left out: the fuzzer would
revoke the token it authenticates with and spend the rest of its budget on 401s.
Everything else, DELETE included, is fair game on the throw-away database.

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


def command_for(base: str, token: str, report_dir: Path, args: argparse.Namespace) -> list[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "run", f"{base}/api/schema/?format=json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", CHECKS,
        "--max-examples", str(args.examples),
        "--max-time", str(args.seconds),
        # One worker per run: on Python 3.11 ast.parse in concurrent threads (Hypothesis
        # describing its filters) fails with "AST constructor recursion depth mismatch".
        "--workers", "1",
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
    return command


def fuzz(base: str, tokens: dict[str, str], args: argparse.Namespace) -> dict[str, int]:
    """Both runs at once (the server has two workers), each logging to its report folder;
    the logs are printed one after the other when both are done."""
    print(f"=== schemathesis as {' and as '.join(tokens)}, side by side: {args.seconds} s each, "
          f"≤ {args.examples} examples per operation and phase ===", flush=True)
    started = time.monotonic()
    runs = {}
    for who, token in tokens.items():
        # Run inside the report folder: schemathesis keeps its crash cache (.schemathesis/) in
        # the current directory, and a re-run replays what failed last time first.
        report_dir = (Path(args.report_dir) / who).resolve()
        report_dir.mkdir(parents=True, exist_ok=True)
        log = open(report_dir / "output.txt", "w+b")
        proc = subprocess.Popen(command_for(base, token, report_dir, args), cwd=report_dir, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "NO_COLOR": "1"})
        runs[who] = (proc, log)
    codes = {}
    for who, (proc, log) in runs.items():
        # A hard stop well past the budget: a hung request must not hold CI until its own limit.
        try:
            codes[who] = proc.wait(timeout=max(1.0, started + args.seconds * 2 + 120 - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes[who] = 1
            print(f"schemathesis as the {who} did not finish in time", file=sys.stderr)
        log.seek(0)
        print(f"--- schemathesis as the {who} ---", flush=True)
        sys.stdout.buffer.write(log.read())
        log.close()
        print(f"--- schemathesis as the {who}: exit {codes[who]} ---", flush=True)
    print(f"fuzzing took {time.monotonic() - started:.0f} s", flush=True)
    return codes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("API_FUZZ_SECONDS", 90)),
                        help="time budget of each of the two runs")
    parser.add_argument("--examples", type=int, default=int(os.environ.get("API_FUZZ_EXAMPLES", 25)),
                        help="most examples per operation in each phase")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("API_FUZZ_SEED", time.time())),
                        help="random seed (printed, to reproduce a run)")
    parser.add_argument("--report-dir", default=os.environ.get("API_FUZZ_REPORT_DIR", str(ROOT / "var" / "api-fuzz")))
    parser.add_argument("--keep", action="store_true", help="keep the server's data folder (and database)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # CI's time limit: still stop the server
    print(f"seed {args.seed}", flush=True)
    try:
        with serve(keep=args.keep) as server:
            results = fuzz(server.base, {"publisher": server.publisher_token, "customer": server.customer_token}, args)
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
