"""Storage behind ctx: instance cache and data containers, the tenant cache and the
tenant SQL store.

Two implementations of one interface (``Store``):

- ``DjangoStore(instance)`` for installed instances: ``CacheEntry`` rows (instance-scoped,
  or organization-scoped with ``instance`` NULL for the tenant cache), ``ContainerEntry``
  rows, and one SQLite file per organization for ``ctx.sql``.
- ``MemoryStore()`` for ``run_handler``: dictionaries and an in-memory SQLite database,
  shared by the runs of one process and thrown away after.

Tenant SQL isolation: each organization has its own SQLite file,
``JUNCTION_RUNTIME_TENANT_DIR/<organization id>.sqlite3``, and the connection is guarded
(``dispatch.guard_sqlite``): ATTACH (including VACUUM INTO), DETACH, PRAGMA, transactions
and extensions are denied by an authorizer and the attached-database limit is 0, so a
statement can only ever reach its own organization's file. ``max_page_count`` caps its size.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .dispatch import guard_sqlite, remaining, sqlite_execute

TENANT_MAX_PAGES = 25_600  # × 4 KiB pages = 100 MiB per organization


class Store:
    """What ctx needs from storage. ``ttl`` is in seconds (None: no expiry)."""

    def cache_get(self, key: str) -> Any: ...
    def cache_set(self, key: str, value: Any, ttl: float | None) -> None: ...
    def container_get(self, container: str, key: str) -> Any: ...
    def container_set(self, container: str, key: str, value: Any) -> None: ...
    def container_list(self, container: str, limit: int) -> list[dict]: ...
    def container_delete(self, container: str, key: str) -> bool: ...
    def tenant_cache_get(self, key: str) -> Any: ...
    def tenant_cache_set(self, key: str, value: Any, ttl: float | None) -> None: ...
    def tenant_cache_delete(self, key: str) -> bool: ...
    def tenant_sql(self, query: str, params: list, *, deadline: float, max_rows: int) -> list[dict]: ...


def _guarded_tenant_connection(target: str, deadline: float) -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=min(5.0, remaining(deadline)), isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"PRAGMA max_page_count = {TENANT_MAX_PAGES}")
    conn.execute("PRAGMA trusted_schema = OFF")
    guard_sqlite(conn, deadline)
    return conn


class MemoryStore(Store):
    """Throw-away storage for the command line: nothing outlives the process."""

    def __init__(self):
        self.cache: dict[str, tuple[Any, float | None]] = {}
        self.tenant_cache: dict[str, tuple[Any, float | None]] = {}
        self.containers: dict[str, dict[str, Any]] = {}
        self._sql: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _get(bucket, key):
        item = bucket.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.time():
            bucket.pop(key, None)
            return None
        return value

    @staticmethod
    def _expiry(ttl):
        return time.time() + ttl if ttl else None

    def cache_get(self, key):
        return self._get(self.cache, key)

    def cache_set(self, key, value, ttl):
        self.cache[key] = (value, self._expiry(ttl))

    def container_get(self, container, key):
        return self.containers.get(container, {}).get(key)

    def container_set(self, container, key, value):
        self.containers.setdefault(container, {})[key] = value

    def container_list(self, container, limit):
        entries = self.containers.get(container, {})
        return [{"key": k, "value": entries[k]} for k in sorted(entries)[:limit]]

    def container_delete(self, container, key):
        return self.containers.get(container, {}).pop(key, None) is not None

    def tenant_cache_get(self, key):
        return self._get(self.tenant_cache, key)

    def tenant_cache_set(self, key, value, ttl):
        self.tenant_cache[key] = (value, self._expiry(ttl))

    def tenant_cache_delete(self, key):
        return self.tenant_cache.pop(key, None) is not None

    def tenant_sql(self, query, params, *, deadline, max_rows):
        with self._lock:
            if self._sql is None:
                self._sql = _guarded_tenant_connection(":memory:", deadline)
            guard_sqlite(self._sql, deadline)  # re-arm the progress handler with this run's deadline
            return sqlite_execute(self._sql, query, params, deadline=deadline, max_rows=max_rows)


def tenant_sqlite_path(organization_id: int) -> Path:
    root = Path(getattr(settings, "JUNCTION_RUNTIME_TENANT_DIR", settings.DATA_DIR / "tenants"))
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{int(organization_id)}.sqlite3"


class DjangoStore(Store):
    """Storage of one installed instance (and its organization, for the tenant parts)."""

    def __init__(self, instance):
        self.instance = instance
        self.instance_id = instance.pk
        self.organization_id = instance.organization_id

    # --- cache entries (instance-scoped or tenant-scoped) ---
    def _cache_scope(self, tenant: bool) -> Q:
        if tenant:
            return Q(organization_id=self.organization_id, instance__isnull=True)
        return Q(instance_id=self.instance_id)

    def _cache_get(self, key, tenant):
        from marketplace.models import CacheEntry

        now = timezone.now()
        entry = (
            CacheEntry.objects.filter(self._cache_scope(tenant), key=key)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .values_list("value", flat=True)
            .first()
        )
        return entry

    def _cache_set(self, key, value, ttl, tenant):
        from marketplace.models import CacheEntry

        expires_at = timezone.now() + timedelta(seconds=ttl) if ttl else None
        lookup = {"organization_id": self.organization_id, "key": key,
                  "instance_id": None if tenant else self.instance_id}
        for attempt in range(2):
            try:
                with transaction.atomic():
                    updated = CacheEntry.objects.filter(self._cache_scope(tenant), key=key).update(
                        value=value, expires_at=expires_at
                    )
                    if not updated:
                        CacheEntry.objects.create(value=value, expires_at=expires_at, **lookup)
                return
            except IntegrityError:  # a concurrent run created it first: update it
                if attempt:
                    raise

    def cache_get(self, key):
        return self._cache_get(key, tenant=False)

    def cache_set(self, key, value, ttl):
        self._cache_set(key, value, ttl, tenant=False)

    def tenant_cache_get(self, key):
        return self._cache_get(key, tenant=True)

    def tenant_cache_set(self, key, value, ttl):
        self._cache_set(key, value, ttl, tenant=True)

    def tenant_cache_delete(self, key):
        from marketplace.models import CacheEntry

        deleted, _ = CacheEntry.objects.filter(self._cache_scope(True), key=key).delete()
        return bool(deleted)

    # --- data containers ---
    def container_get(self, container, key):
        from marketplace.models import ContainerEntry

        return (
            ContainerEntry.objects.filter(instance_id=self.instance_id, container=container, key=key)
            .values_list("value", flat=True)
            .first()
        )

    def container_set(self, container, key, value):
        from marketplace.models import ContainerEntry

        # One INSERT … ON CONFLICT DO UPDATE: no race between concurrent runs.
        ContainerEntry.objects.bulk_create(
            [ContainerEntry(instance_id=self.instance_id, container=container, key=key, value=value)],
            update_conflicts=True,
            unique_fields=["instance", "container", "key"],
            update_fields=["value", "updated_at"],
        )

    def container_list(self, container, limit):
        from marketplace.models import ContainerEntry

        rows = (
            ContainerEntry.objects.filter(instance_id=self.instance_id, container=container)
            .order_by("key")
            .values_list("key", "value")[:limit]
        )
        return [{"key": key, "value": value} for key, value in rows]

    def container_delete(self, container, key):
        from marketplace.models import ContainerEntry

        deleted, _ = ContainerEntry.objects.filter(
            instance_id=self.instance_id, container=container, key=key
        ).delete()
        return bool(deleted)

    # --- tenant SQL ---
    def tenant_sql(self, query, params, *, deadline, max_rows):
        conn = _guarded_tenant_connection(str(tenant_sqlite_path(self.organization_id)), deadline)
        try:
            return sqlite_execute(conn, query, params, deadline=deadline, max_rows=max_rows)
        finally:
            conn.close()
