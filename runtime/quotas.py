"""Storage quotas (docs/quotas.md): what an instance's storage and an organization's tenant
cache may hold, what an entry is charged (``entry_size``), and the ``StorageUsage``
counter rows the store keeps under a lock (``stores.DjangoStore``). Both stores charge
the same, so ``run_handler`` (``MemoryStore``) meets the quotas first.

The counter statements are plain SQL: every write pays for them, and building them with
the ORM costs several times what running them does (bench/bench_storage.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection

from .outcomes import HostError


@dataclass(frozen=True)
class Quota:
    """The most one storage scope may hold."""

    what: str
    max_bytes: int
    max_entries: int

    def refuse(self, used_bytes: int, used_entries: int, add_bytes: int, add_entries: int) -> HostError | None:
        """The error for a write adding ``add_*`` to a scope holding ``used_*``, or None
        when it fits. A write that frees space always fits, even over a lowered quota."""
        if add_bytes <= 0 and add_entries <= 0:
            return None
        if used_bytes + add_bytes <= self.max_bytes and used_entries + add_entries <= self.max_entries:
            return None
        return HostError(
            "quota_exceeded",
            f"{self.what} is full: it holds {used_bytes} bytes in {used_entries} entries, at most "
            f"{self.max_bytes} bytes and {self.max_entries} entries; delete entries or give cached ones a ttl",
        )


def instance_quota() -> Quota:
    return Quota("the instance's storage (containers and cache)",
                 settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES, settings.JUNCTION_INSTANCE_STORAGE_MAX_ENTRIES)


def tenant_cache_quota() -> Quota:
    return Quota("the organization's cache (ctx.cache)",
                 settings.JUNCTION_TENANT_CACHE_MAX_BYTES, settings.JUNCTION_TENANT_CACHE_MAX_ENTRIES)


def entry_size(key: str, value: Any, container: str = "") -> int:
    """What an entry is charged: its value as compact JSON, plus its key and container
    name (ASCII-escaped JSON, so characters are bytes)."""
    return len(json.dumps(value, separators=(",", ":"))) + len(key) + len(container)


@dataclass
class Usage:
    """A scope's ``StorageUsage`` row, as read under its lock."""

    id: int
    bytes: int
    entries: int


def table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(name: str) -> str:
    return connection.ops.quote_name(name)


def stored_size(cursor, model, where: str, params: list) -> int | None:
    """The charge of the entry ``where`` selects, or None when there is none."""
    cursor.execute(f"SELECT size FROM {table(model)} WHERE {where}", params)
    row = cursor.fetchone()
    return None if row is None else row[0]


def save_usage(cursor, usage: Usage) -> None:
    from marketplace.models import StorageUsage

    cursor.execute(f"UPDATE {table(StorageUsage)} SET bytes = %s, entries = %s WHERE id = %s",
                   [usage.bytes, usage.entries, usage.id])
