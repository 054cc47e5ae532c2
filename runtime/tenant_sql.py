"""The tenant SQL store behind ``ctx.sql``: one SQLite file per organization,
``JUNCTION_RUNTIME_TENANT_DIR/<organization id>.sqlite3`` (``MemoryStore``: an in-memory
database), opened through a guarded connection.

Isolation: the connection is guarded (``device_sql.guard_sqlite``): ATTACH (including
VACUUM INTO), DETACH, PRAGMA, transactions and extensions are denied by an authorizer and
the attached-database limit is 0, so a statement can only ever reach its own
organization's file. Quotas: the file is capped by ``max_page_count``; its TEMP tables
live in memory under a page cap of their own, and SQLite's memory in the process (sorts,
DISTINCT, temporary results) under a hard heap limit: none of them can fill the disk.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from django.conf import settings

from .device_sql import guard_sqlite, sqlite_execute
from .devices import remaining
from .outcomes import HostError

_heap_limited = False


def _limit_sqlite_heap() -> None:
    """Cap the memory SQLite may take in this process (sorts, DISTINCT, temporary results
    of tenant queries, which temp_store=MEMORY keeps off the disk). The pragma is
    process-wide and can only lower the limit, so it is set once."""
    global _heap_limited
    limit = settings.JUNCTION_TENANT_SQL_HEAP_MAX_BYTES
    if _heap_limited or not limit:
        return
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute(f"PRAGMA hard_heap_limit = {int(limit)}")
    finally:
        conn.close()
    _heap_limited = True


def guarded_connection(target: str, deadline: float) -> sqlite3.Connection:
    _limit_sqlite_heap()
    conn = sqlite3.connect(target, timeout=min(5.0, remaining(deadline)), isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA trusted_schema = OFF")
    # TEMP tables and indexes in memory, under a page cap: never on disk, never unbounded.
    conn.execute("PRAGMA temp_store = MEMORY")
    for schema, limit in (("main", settings.JUNCTION_TENANT_SQL_MAX_BYTES),
                          ("temp", settings.JUNCTION_TENANT_SQL_TEMP_MAX_BYTES)):
        page_size = conn.execute(f"PRAGMA {schema}.page_size").fetchone()[0]
        conn.execute(f"PRAGMA {schema}.max_page_count = {max(1, int(limit) // page_size)}")
    guard_sqlite(conn, deadline)
    return conn


def execute(conn: sqlite3.Connection, query: str, params: list, *, deadline: float,
                       max_rows: int) -> list[dict]:
    """``sqlite_execute`` on a tenant connection, a full file or TEMP space or the heap
    limit reported as ``quota_exceeded``."""
    try:
        return sqlite_execute(conn, query, params, deadline=deadline, max_rows=max_rows)
    except HostError as exc:
        if exc.code == "sql_error" and "database or disk is full" in exc.message:
            raise HostError(
                "quota_exceeded",
                f"the organization's SQL store is full: at most {settings.JUNCTION_TENANT_SQL_MAX_BYTES} bytes "
                f"in its file and {settings.JUNCTION_TENANT_SQL_TEMP_MAX_BYTES} bytes in TEMP tables",
            ) from None
        raise
    except MemoryError:  # SQLITE_NOMEM: the heap limit
        raise HostError(
            "quota_exceeded",
            f"the query needed more memory than SQL may take ({settings.JUNCTION_TENANT_SQL_HEAP_MAX_BYTES} bytes "
            "for sorts and temporary results)",
        ) from None


def tenant_sqlite_path(organization_id: int) -> Path:
    root = Path(getattr(settings, "JUNCTION_RUNTIME_TENANT_DIR", settings.DATA_DIR / "tenants"))
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{int(organization_id)}.sqlite3"
