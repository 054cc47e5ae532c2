"""Storage behind ctx: instance cache and data containers, the tenant cache and the
tenant SQL store.

Two implementations of one interface (``Store``):

- ``DjangoStore(instance)`` for installed instances: ``CacheEntry`` rows (instance-scoped,
  or organization-scoped with ``instance`` NULL for the tenant cache), ``ContainerEntry``
  rows, and one SQLite file per organization for ``ctx.sql``.
- ``MemoryStore()`` for ``run_handler``: dictionaries and an in-memory SQLite database,
  shared by the runs of one process and thrown away after.

The tenant SQL file and its guards are ``runtime.tenant_sql``; what each scope may hold
and what an entry is charged, ``runtime.quotas`` (docs/quotas.md). Both implementations
charge the same, so ``run_handler`` meets the quotas first: a write over a quota raises
the catchable ``quota_exceeded``; replacing a value charges the difference, deleting frees
its share, and expired cache entries are purged before a write is refused.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from . import tenant_sql
from .device_sql import guard_sqlite
from .quotas import Usage, column, entry_size, instance_quota, save_usage, stored_size, table, tenant_cache_quota


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


class MemoryStore(Store):
    """Throw-away storage for the command line: nothing outlives the process. Quotas are
    counted as ``DjangoStore`` counts them."""

    def __init__(self):
        self.cache: dict[str, tuple[Any, float | None]] = {}
        self.tenant_cache: dict[str, tuple[Any, float | None]] = {}
        self.containers: dict[str, dict[str, Any]] = {}
        # Bytes charged per entry, by quota scope.
        self._charged: dict[str, dict[tuple, int]] = {"instance": {}, "tenant": {}}
        self._sql: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _get(bucket, key):
        item = bucket.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.time():
            return None  # still charged until a write finds the scope full and purges it
        return value

    @staticmethod
    def _expiry(ttl):
        return time.time() + ttl if ttl else None

    def _charge(self, scope: str, entry: tuple, size: int) -> None:
        """Charge ``entry`` its new ``size`` in ``scope``, or raise ``quota_exceeded``."""
        quota = instance_quota() if scope == "instance" else tenant_cache_quota()
        charged = self._charged[scope]
        for purged in (False, True):
            old = charged.get(entry)
            error = quota.refuse(sum(charged.values()), len(charged), size - (old or 0), int(old is None))
            if error is None:
                charged[entry] = size
                return
            if not purged:
                self._purge_expired(scope)
        raise error

    def _purge_expired(self, scope: str) -> None:
        bucket = self.cache if scope == "instance" else self.tenant_cache
        now = time.time()
        for key, (_, expires) in list(bucket.items()):
            if expires is not None and expires <= now:
                del bucket[key]
                self._charged[scope].pop(("cache", key), None)

    def cache_get(self, key):
        return self._get(self.cache, key)

    def cache_set(self, key, value, ttl):
        self._charge("instance", ("cache", key), entry_size(key, value))
        self.cache[key] = (value, self._expiry(ttl))

    def container_get(self, container, key):
        return self.containers.get(container, {}).get(key)

    def container_set(self, container, key, value):
        self._charge("instance", ("container", container, key), entry_size(key, value, container))
        self.containers.setdefault(container, {})[key] = value

    def container_list(self, container, limit):
        entries = self.containers.get(container, {})
        return [{"key": k, "value": entries[k]} for k in sorted(entries)[:limit]]

    def container_delete(self, container, key):
        self._charged["instance"].pop(("container", container, key), None)
        return self.containers.get(container, {}).pop(key, None) is not None

    def tenant_cache_get(self, key):
        return self._get(self.tenant_cache, key)

    def tenant_cache_set(self, key, value, ttl):
        self._charge("tenant", ("cache", key), entry_size(key, value))
        self.tenant_cache[key] = (value, self._expiry(ttl))

    def tenant_cache_delete(self, key):
        self._charged["tenant"].pop(("cache", key), None)
        return self.tenant_cache.pop(key, None) is not None

    def tenant_sql(self, query, params, *, deadline, max_rows):
        with self._lock:
            if self._sql is None:
                self._sql = tenant_sql.guarded_connection(":memory:", deadline)
            guard_sqlite(self._sql, deadline)  # re-arm the progress handler with this run's deadline
            return tenant_sql.execute(self._sql, query, params, deadline=deadline, max_rows=max_rows)


class DjangoStore(Store):
    """Storage of one installed instance (and its organization, for the tenant parts).

    Every write and delete of an entry runs in one short transaction that first locks the
    scope's ``StorageUsage`` row: concurrent runs of an instance (or of an organization, for
    the tenant cache) queue there for the few statements of a write, and the quota check,
    the entry and the counter change together."""

    def __init__(self, instance):
        self.instance = instance
        self.instance_id = instance.pk
        self.organization_id = instance.organization_id

    # --- quotas ---
    # Every write pays for these statements, so they are plain SQL: building them with the
    # ORM costs several times what running them does (bench/bench_storage.py).
    def _scope(self, tenant: bool) -> tuple[str, list]:
        if tenant:
            return "organization_id = %s AND instance_id IS NULL", [self.organization_id]
        return "instance_id = %s", [self.instance_id]

    def _usage(self, cursor, tenant: bool) -> Usage:
        """The scope's usage row, locked until the transaction ends; created, and counted
        from the entries already there, the first time the scope is written."""
        from marketplace.models import StorageUsage

        where, params = self._scope(tenant)
        lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
        select = f"SELECT id, bytes, entries FROM {table(StorageUsage)} WHERE {where}{lock}"
        cursor.execute(select, params)
        row = cursor.fetchone()
        if row is not None:
            return Usage(*row)
        StorageUsage.objects.bulk_create(
            [StorageUsage(organization_id=self.organization_id, instance_id=None if tenant else self.instance_id)],
            ignore_conflicts=True,
        )
        cursor.execute(select, params)
        usage = Usage(*cursor.fetchone())
        self._recount(cursor, usage, tenant)
        return usage

    def _recount(self, cursor, usage: Usage, tenant: bool) -> None:
        """Purge the scope's expired cache entries and count exactly what is left."""
        from marketplace.models import CacheEntry, ContainerEntry

        cache = CacheEntry.objects.filter(self._cache_scope(tenant))
        cache.filter(expires_at__lte=timezone.now()).delete()
        parts = [cache] if tenant else [cache, ContainerEntry.objects.filter(instance_id=self.instance_id)]
        totals = [part.aggregate(bytes=Sum("size"), entries=Count("pk")) for part in parts]
        usage.bytes = sum(t["bytes"] or 0 for t in totals)
        usage.entries = sum(t["entries"] for t in totals)
        save_usage(cursor, usage)

    def _charged_write(self, *, tenant: bool, entry: tuple, size: int, write) -> None:
        """Write one entry of ``size`` bytes under the scope's lock, charging the difference
        to its quota; ``entry`` is (model, WHERE clause, params) selecting it, and
        ``write(exists)`` stores it. A scope found full is recounted (expired cache entries
        purged) before refusing."""
        quota = tenant_cache_quota() if tenant else instance_quota()
        with transaction.atomic(), connection.cursor() as cursor:
            usage = self._usage(cursor, tenant)
            for recounted in (False, True):
                old = stored_size(cursor, *entry)
                error = quota.refuse(usage.bytes, usage.entries, size - (old or 0), int(old is None))
                if error is None:
                    break
                if recounted:
                    raise error
                self._recount(cursor, usage, tenant)
            write(old is not None)
            usage.bytes += size - (old or 0)
            usage.entries += int(old is None)
            save_usage(cursor, usage)

    def _charged_delete(self, *, tenant: bool, entry: tuple) -> bool:
        model, where, params = entry
        with transaction.atomic(), connection.cursor() as cursor:
            usage = self._usage(cursor, tenant)
            old = stored_size(cursor, *entry)
            if old is None:
                return False
            # No signals or cascades hang on entries: the DELETE Django's fast path would send.
            cursor.execute(f"DELETE FROM {table(model)} WHERE {where}", params)
            usage.bytes = max(0, usage.bytes - old)
            usage.entries = max(0, usage.entries - 1)
            save_usage(cursor, usage)
            return True

    def _cache_entry(self, key: str, tenant: bool) -> tuple:
        from marketplace.models import CacheEntry

        where, params = self._scope(tenant)
        return CacheEntry, f"{where} AND {column('key')} = %s", [*params, key]

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
        size = entry_size(key, value)

        def write(exists: bool) -> None:
            # The scope's lock is held: no concurrent run can create the key in between.
            if exists:
                CacheEntry.objects.filter(self._cache_scope(tenant), key=key).update(
                    value=value, expires_at=expires_at, size=size
                )
            else:
                CacheEntry.objects.create(
                    organization_id=self.organization_id, instance_id=None if tenant else self.instance_id,
                    key=key, value=value, expires_at=expires_at, size=size,
                )

        self._charged_write(tenant=tenant, entry=self._cache_entry(key, tenant), size=size, write=write)

    def cache_get(self, key):
        return self._cache_get(key, tenant=False)

    def cache_set(self, key, value, ttl):
        self._cache_set(key, value, ttl, tenant=False)

    def tenant_cache_get(self, key):
        return self._cache_get(key, tenant=True)

    def tenant_cache_set(self, key, value, ttl):
        self._cache_set(key, value, ttl, tenant=True)

    def tenant_cache_delete(self, key):
        return self._charged_delete(tenant=True, entry=self._cache_entry(key, True))

    # --- data containers ---
    def container_get(self, container, key):
        from marketplace.models import ContainerEntry

        return (
            ContainerEntry.objects.filter(instance_id=self.instance_id, container=container, key=key)
            .order_by()  # one row at most: by pk, not the model ordering (which joins the instance)
            .values_list("value", flat=True)
            .first()
        )

    def container_set(self, container, key, value):
        from marketplace.models import ContainerEntry

        size = entry_size(key, value, container)

        def write(exists: bool) -> None:
            ContainerEntry.objects.bulk_create(
                [ContainerEntry(instance_id=self.instance_id, container=container, key=key, value=value, size=size)],
                update_conflicts=True,
                unique_fields=["instance", "container", "key"],
                update_fields=["value", "size", "updated_at"],
            )

        self._charged_write(tenant=False, entry=self._container_entry(container, key), size=size, write=write)

    def container_list(self, container, limit):
        from marketplace.models import ContainerEntry

        rows = (
            ContainerEntry.objects.filter(instance_id=self.instance_id, container=container)
            .order_by("key")
            .values_list("key", "value")[:limit]
        )
        return [{"key": key, "value": value} for key, value in rows]

    def container_delete(self, container, key):
        return self._charged_delete(tenant=False, entry=self._container_entry(container, key))

    def _container_entry(self, container: str, key: str) -> tuple:
        from marketplace.models import ContainerEntry

        where = f"instance_id = %s AND container = %s AND {column('key')} = %s"
        return ContainerEntry, where, [self.instance_id, container, key]

    # --- tenant SQL ---
    def tenant_sql(self, query, params, *, deadline, max_rows):
        conn = tenant_sql.guarded_connection(str(tenant_sql.tenant_sqlite_path(self.organization_id)), deadline)
        try:
            return tenant_sql.execute(conn, query, params, deadline=deadline, max_rows=max_rows)
        finally:
            conn.close()
