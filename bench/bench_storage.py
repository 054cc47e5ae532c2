"""Benchmark: what the storage quota costs per write on PostgreSQL.

    .venv/bin/python bench/bench_storage.py [--writes 2000] [--sync-commit]

Uses its own database (BENCH_DB, default junction_bench_quotas; bench/benchdb.py). Each
quota-checked write (``DjangoStore.container_set`` / ``cache_set``) is one short
transaction: lock the scope's usage row, read the entry's old size, write the entry,
update the usage row. Compared with the write alone (the single upsert containers used
before quotas), sequentially, and with two threads writing at once to one instance (they
queue on its usage row) or to two instances (they do not).
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("BENCH_DB", "junction_bench_quotas")

from benchdb import make_version, prepare  # noqa: E402  (prepare() must run before Django is imported)


def per_write(fn, n: int) -> str:
    """Median wall-clock µs of ``fn(i)`` over n calls, and this process's mean CPU µs per call
    (which a busy machine inflates less than the wall clock)."""
    times = []
    cpu = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu) / n
    return f"{statistics.median(times) * 1e6:7.0f} µs wall, {cpu * 1e6:6.0f} µs CPU"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--sync-commit", action="store_true",
                        help="flush the WAL at every commit (on a shared disk the fsync swamps the statements)")
    args = parser.parse_args()
    prepare(synchronous_commit=args.sync_commit)

    from django.db import connection

    from marketplace.models import ContainerEntry, Instance
    from runtime.stores import DjangoStore

    org, version = make_version({"tick": {"type": "timer", "file": "main.lua", "function": "tick",
                                          "schedule": {"every": "1m"}}},
                                {"main.lua": "function tick(ctx, input) end\n"})
    instances = [Instance.objects.create(organization=org, version=version, name=f"bench {i}", config={})
                 for i in range(3)]
    value = {"id": 1, "state": "done", "note": "x" * 80}
    n = args.writes

    def bare_upsert(i):  # containers before quotas: one INSERT … ON CONFLICT DO UPDATE
        ContainerEntry.objects.bulk_create(
            [ContainerEntry(instance_id=instances[0].pk, container="beats", key=f"bare{i % 500}", value=value)],
            update_conflicts=True, unique_fields=["instance", "container", "key"], update_fields=["value", "updated_at"],
        )

    store = DjangoStore(instances[1])
    print(f"PostgreSQL {connection.cursor().connection.info.server_version}, synchronous_commit "
          f"{'on' if args.sync_commit else 'off'}, {n} writes each, median per write")
    print(f"  upsert alone (before quotas)          {per_write(bare_upsert, n)}")
    print(f"  container_set with quota, new keys    {per_write(lambda i: store.container_set('beats', f'k{i}', value), n)}")
    print(f"  container_set with quota, replacing   {per_write(lambda i: store.container_set('beats', f'k{i % 100}', value), n)}")
    print(f"  cache_set with quota, replacing       {per_write(lambda i: store.cache_set(f'c{i % 100}', value, 60), n)}")

    def writers(targets) -> float:
        """Writes per second of one thread per target instance, all at once."""
        barrier = threading.Barrier(len(targets))

        def work(instance):
            s = DjangoStore(instance)
            barrier.wait()
            for i in range(n):
                s.container_set("beats", f"t{threading.get_ident()}-{i % 200}", value)
            connection.close()

        threads = [threading.Thread(target=work, args=(t,)) for t in targets]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(targets) * n / (time.perf_counter() - start)

    print(f"  2 threads, one instance (same lock)   {writers([instances[2], instances[2]]):7.0f} writes/s")
    print(f"  2 threads, two instances              {writers([instances[0], instances[1]]):7.0f} writes/s")


if __name__ == "__main__":
    main()
