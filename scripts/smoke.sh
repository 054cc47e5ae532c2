#!/usr/bin/env bash
# Install requirements.txt ALONE into a fresh virtualenv outside the work tree and run the
# production smoke check (scripts/smoke.py: PostgreSQL + Redis, gunicorn, worker, beat,
# one webhook event and one timer run). Needs PostgreSQL and Redis running (.ci/run
# starts them). Exit status: the smoke run's. The virtualenv is removed afterwards.
#
#   scripts/smoke.sh [smoke.py options]     SMOKE_PYTHON=python3.12 to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."

venv="$(mktemp -d "${TMPDIR:-/tmp}/junction-smoke-venv.XXXXXX")"
trap 'rm -rf "$venv"' EXIT

"${SMOKE_PYTHON:-python3}" -m venv "$venv"
echo "installing requirements.txt alone into $venv"
if ! "$venv/bin/python" -m pip install --quiet -r requirements.txt >"$venv/pip.log" 2>&1; then
  cat "$venv/pip.log" >&2
  exit 1
fi
PYTHONDONTWRITEBYTECODE=1 "$venv/bin/python" scripts/smoke.py "$@"
