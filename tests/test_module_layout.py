"""How the code is laid out, checked from its source: which database it is on is asked in
one module (``runtime/postgres.py``, the PostgreSQL fast paths), and no runtime module
grows past the ceiling (docs/running.md)."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_MODULE = ROOT / "runtime" / "postgres.py"


def sources(*packages: str) -> list[Path]:
    return sorted(
        path for package in packages for path in (ROOT / package).rglob("*.py") if "migrations" not in path.parts
    )


def test_only_the_postgres_module_asks_which_database_it_is_on():
    # Migrations are left out: they write vendor-specific schema once, and must not import
    # the app's code.
    asking = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sources("marketplace", "runtime")
        if path != VENDOR_MODULE
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\.vendor\b", line)
    ]
    assert not asking, "branch on the database vendor only in runtime/postgres.py: " + ", ".join(asking)
    assert re.search(r"\.vendor\b", VENDOR_MODULE.read_text())


# About 400 lines of Python: beyond it a module holds more than one thing (cut it along a
# seam, as devices.py / device_sql.py and stores.py / quotas.py / tenant_sql.py are).
RUNTIME_MODULE_MAX_LINES = 420


def test_no_runtime_module_is_over_the_ceiling():
    over = {
        str(path.relative_to(ROOT)): lines
        for path in sources("runtime")
        if (lines := len(path.read_text().splitlines())) > RUNTIME_MODULE_MAX_LINES
    }
    assert not over, f"runtime modules over {RUNTIME_MODULE_MAX_LINES} lines: {over}"
