"""Quotas and caps (issue 9, section 3; docs/quotas.md): storage per instance and per
tenant cache, the tenant SQL file and its TEMP tables, items per poll, queued runs per
instance, and ``run_handler`` meeting the same quotas. Quotas are made small with
settings overrides so that each reproduction stays fast."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db.models import Sum
from django.test import Client

from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import QuotaExceeded
from marketplace.models import CacheEntry, ContainerEntry, HandlerRun, StorageUsage
from runtime.dispatcher import dispatch_due
from runtime.events import post_event
from runtime.models import SeenItem
from runtime.outcomes import HostError
from runtime.quotas import entry_size
from runtime.stores import DjangoStore, MemoryStore
from runtime.tasks import run_handler_task
from runtime.tenant_sql import tenant_sqlite_path
from runtime.worker import run_now

from .. import factories
from ..conftest import requires_postgres
from .helpers import install, timer

ROOT = Path(__file__).resolve().parents[2]

FILL_LUA = """
-- The reproduction: many large values, containers and cache alternately.
function fill(ctx, input)
  local blob = string.rep("x", input.size)
  for i = 1, input.count do
    if i % 2 == 0 then
      ctx.integration.containersSet("beats", "k" .. i, { blob = blob })
    else
      ctx.integration.cacheSet({ key = "c" .. i, value = blob })
    end
  end
  return { wrote = input.count }
end

-- Catches the refusal, frees space, and writes again.
function make_room(ctx, input)
  local ok, err = pcall(ctx.integration.containersSet, "beats", "big", { blob = string.rep("x", input.size) })
  ctx.integration.containersDelete("beats", "k2")
  ctx.integration.containersSet("beats", "small", { n = 1 })
  return { ok = ok, err = tostring(err) }
end
"""


def stored_bytes(instance) -> int:
    containers = ContainerEntry.objects.filter(instance=instance).aggregate(n=Sum("size"))["n"] or 0
    cache = CacheEntry.objects.filter(instance=instance).aggregate(n=Sum("size"))["n"] or 0
    return containers + cache


def fill_instance():
    handler = {"type": "rpc", "file": "main.lua"}
    return install({"fill": {**handler, "function": "fill"}, "make_room": {**handler, "function": "make_room"}},
                   {"main.lua": FILL_LUA})


# --- Storage per instance ------------------------------------------------------------------------

@pytest.mark.django_db
def test_fifty_megabytes_of_containers_and_cache_are_refused_at_the_quota(settings):
    """200 entries of 250 KB (50 MB) once went in unchecked; scaled down 10× in value size,
    the run stops with quota_exceeded at a 1 MB quota and stores no more than that."""
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 1_000_000
    instance = fill_instance()
    size = 25_000
    run = run_now(instance=instance, handler="fill", input={"size": size, "count": 200}, trigger=Trigger.RPC)

    assert (run.status, run.error_code) == (RunStatus.FAILED, "quota_exceeded")
    assert "at most 1000000 bytes" in run.error_message
    one = entry_size("k2", {"blob": "x" * size}, "beats")
    assert 1_000_000 - one < stored_bytes(instance) <= 1_000_000
    usage = StorageUsage.objects.get(instance=instance)
    assert (usage.bytes, usage.entries) == (
        stored_bytes(instance),
        ContainerEntry.objects.filter(instance=instance).count() + CacheEntry.objects.filter(instance=instance).count(),
    )


@pytest.mark.django_db
def test_a_handler_can_catch_the_refusal_and_free_space(settings):
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 100_000
    instance = fill_instance()
    run_now(instance=instance, handler="fill", input={"size": 20_000, "count": 4}, trigger=Trigger.RPC)
    run = run_now(instance=instance, handler="make_room", input={"size": 50_000}, trigger=Trigger.RPC)

    assert run.status == RunStatus.SUCCEEDED, run.error_message
    assert run.result["ok"] is False and "quota_exceeded: " in run.result["err"]
    keys = set(ContainerEntry.objects.filter(instance=instance).values_list("key", flat=True))
    assert keys == {"k4", "small"}


@pytest.mark.django_db
def test_the_entry_cap_counts_containers_and_cache_together(settings):
    settings.JUNCTION_INSTANCE_STORAGE_MAX_ENTRIES = 5
    instance = fill_instance()
    run = run_now(instance=instance, handler="fill", input={"size": 10, "count": 6}, trigger=Trigger.RPC)
    assert (run.status, run.error_code) == (RunStatus.FAILED, "quota_exceeded")
    assert "5 entries" in run.error_message
    assert ContainerEntry.objects.filter(instance=instance).count() + CacheEntry.objects.filter(instance=instance).count() == 5


@pytest.fixture(params=["django", "memory"])
def store(request):
    """Both stores behind ctx: the same quota arithmetic in each."""
    if request.param == "memory":
        return MemoryStore()
    request.getfixturevalue("db")
    return DjangoStore(install({"tick": timer()}))


def value_of(total: int, key: str, container: str = "") -> str:
    """A string value that ``entry_size`` charges exactly ``total`` bytes for."""
    return "x" * (total - len(key) - len(container) - 2)


def test_replacing_charges_the_difference_and_deleting_frees(store, settings):
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 1000
    store.container_set("beats", "a", value_of(600, "a", "beats"))
    store.container_set("beats", "a", value_of(900, "a", "beats"))  # +300: 900 in all
    with pytest.raises(HostError) as refused:
        store.cache_set("b", value_of(200, "b"), None)  # 1,100
    assert refused.value.code == "quota_exceeded"
    assert store.cache_get("b") is None
    store.container_set("beats", "a", value_of(100, "a", "beats"))  # shrinking always fits
    store.cache_set("b", value_of(200, "b"), None)  # 300
    assert store.container_delete("beats", "a")
    store.cache_set("c", value_of(800, "c"), None)  # 1,000: exactly the quota
    with pytest.raises(HostError):
        store.cache_set("d", value_of(10, "d"), None)


def test_expired_cache_entries_do_not_count(store, settings):
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 1000
    store.cache_set("old", value_of(900, "old"), 0.05)
    time.sleep(0.1)
    store.cache_set("new", value_of(900, "new"), None)  # the expired entry is purged to make room
    assert store.cache_get("new") is not None
    assert store.cache_get("old") is None


def test_the_tenant_cache_has_a_quota_of_its_own(store, settings):
    settings.JUNCTION_TENANT_CACHE_MAX_BYTES = 1000
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 1000
    store.tenant_cache_set("a", value_of(900, "a"), None)
    store.cache_set("a", value_of(900, "a"), None)  # the instance's own quota is untouched
    with pytest.raises(HostError) as refused:
        store.tenant_cache_set("b", value_of(200, "b"), None)
    assert refused.value.code == "quota_exceeded" and "ctx.cache" in refused.value.message
    assert store.tenant_cache_delete("a")
    store.tenant_cache_set("b", value_of(200, "b"), None)


@pytest.mark.django_db
def test_the_tenant_cache_quota_is_shared_by_the_organizations_instances(settings):
    settings.JUNCTION_TENANT_CACHE_MAX_BYTES = 1000
    org = factories.make_org()
    one, two = install({"tick": timer()}, organization=org), install({"tick": timer()}, organization=org)
    DjangoStore(one).tenant_cache_set("a", value_of(900, "a"), None)
    with pytest.raises(HostError):
        DjangoStore(two).tenant_cache_set("b", value_of(200, "b"), None)
    DjangoStore(install({"tick": timer()})).tenant_cache_set("b", value_of(200, "b"), None)  # another organization


@pytest.mark.django_db
def test_usage_is_counted_from_entries_written_before_it_existed(settings):
    """The first write of a scope counts what is already there (entries written before
    quotas, or a usage row deleted by hand)."""
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 1000
    instance = install({"tick": timer()})
    ContainerEntry.objects.create(instance=instance, container="beats", key="old", value="x", size=900)
    with pytest.raises(HostError):
        DjangoStore(instance).cache_set("b", value_of(200, "b"), None)
    DjangoStore(instance).cache_set("b", value_of(50, "b"), None)
    assert StorageUsage.objects.get(instance=instance).bytes == 950


@requires_postgres
@pytest.mark.postgres
@pytest.mark.parametrize("attempt", range(3))
def test_two_runs_cannot_both_take_the_last_of_a_quota(transactional_db, settings, attempt):
    """Two writers of one instance, each on its own connection, at once, into a quota with
    room for one more entry: exactly one gets in."""
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 10_000
    instance = install({"tick": timer()})
    DjangoStore(instance).container_set("beats", "base", value_of(8_000, "base", "beats"))
    barrier = threading.Barrier(2)

    def write(key):
        def go():
            store = DjangoStore(instance)
            barrier.wait(timeout=10)
            store.container_set("beats", key, value_of(1_500, key, "beats"))
            return key
        return go

    results = factories.in_threads(write("a"), write("b"))

    written = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if isinstance(r, HostError)]
    assert len(written) == 1 and len(refused) == 1, results
    assert refused[0].code == "quota_exceeded"
    assert stored_bytes(instance) == 9_500 == StorageUsage.objects.get(instance=instance).bytes


@requires_postgres
@pytest.mark.postgres
def test_concurrent_writers_fill_the_quota_and_no_further(transactional_db, settings):
    settings.JUNCTION_INSTANCE_STORAGE_MAX_BYTES = 50_000
    instance = install({"tick": timer()})
    barrier = threading.Barrier(3)

    def writer(prefix):
        def go():
            store = DjangoStore(instance)
            barrier.wait(timeout=10)
            written = 0
            for i in range(100):
                try:
                    store.container_set("beats", f"{prefix}{i}", value_of(1_000, f"{prefix}{i}", "beats"))
                except HostError as exc:
                    assert exc.code == "quota_exceeded"
                    return written
                written += 1
            return written
        return go

    counts = factories.in_threads(writer("a"), writer("b"), writer("c"))

    assert sum(counts) == 50 and all(counts), counts
    usage = StorageUsage.objects.get(instance=instance)
    assert usage.bytes == stored_bytes(instance) == 50_000 and usage.entries == 50


# --- Tenant SQL ----------------------------------------------------------------------------------

TEMP_LUA = """
function h(ctx, input)
  ctx.sql("CREATE TEMP TABLE t (b BLOB)")
  local inserted, err = 0, nil
  for i = 1, 200 do
    local ok, e = pcall(ctx.sql, "INSERT INTO t VALUES (randomblob(100000))")
    if not ok then err = e break end
    inserted = inserted + 1
  end
  local held = ctx.sql("SELECT coalesce(sum(length(b)), 0) AS n FROM t")[1].n
  return { inserted = inserted, held = held, err = err }
end
"""


def test_temp_tables_stop_at_their_cap(run_code, settings):
    """TEMP tables once took 2 GB in 6 s: 20 MB of inserts stop at a 1 MB cap, and what the
    table holds stays under it."""
    settings.JUNCTION_TENANT_SQL_TEMP_MAX_BYTES = 1024 * 1024
    outcome = run_code(TEMP_LUA, store=MemoryStore())
    assert outcome.ok, outcome.error
    assert "quota_exceeded: the organization's SQL store is full" in outcome.result["err"]
    assert 0 < outcome.result["held"] <= 1024 * 1024
    assert outcome.result["inserted"] < 11


@pytest.mark.django_db
def test_a_temp_table_of_the_tenant_file_never_reaches_the_disk(run_code, settings, tmp_path):
    settings.JUNCTION_RUNTIME_TENANT_DIR = tmp_path
    settings.JUNCTION_TENANT_SQL_TEMP_MAX_BYTES = 1024 * 1024
    instance = install({"tick": timer()})
    outcome = run_code(
        """function h(ctx)
          return ctx.sql("CREATE TEMP TABLE t AS WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 2000) "
                         .. "SELECT randomblob(100000) AS b FROM r")
        end""",
        store=DjangoStore(instance),
    )
    assert outcome.error.code == "quota_exceeded"
    assert [p.name for p in tmp_path.iterdir()] == [f"{instance.organization_id}.sqlite3"]
    assert tenant_sqlite_path(instance.organization_id).stat().st_size < 64 * 1024


@pytest.mark.django_db
def test_the_tenant_file_stops_at_its_cap(run_code, settings, tmp_path):
    settings.JUNCTION_RUNTIME_TENANT_DIR = tmp_path
    settings.JUNCTION_TENANT_SQL_MAX_BYTES = 256 * 1024
    instance = install({"tick": timer()})
    outcome = run_code(
        """function h(ctx)
          ctx.sql("CREATE TABLE big (b BLOB)")
          for i = 1, 100 do ctx.sql("INSERT INTO big VALUES (randomblob(10000))") end
        end""",
        store=DjangoStore(instance),
    )
    assert outcome.error.code == "quota_exceeded"
    assert tenant_sqlite_path(instance.organization_id).stat().st_size <= 256 * 1024
    with sqlite3.connect(tenant_sqlite_path(instance.organization_id)) as conn:
        assert 15 < conn.execute("SELECT count(*) FROM big").fetchone()[0] < 26


# --- Polling timers: items per poll ------------------------------------------------------------

POLL_LUA = """
function poll(ctx, input)
  local items = {}
  for i = 1, 30 do items[#items + 1] = { id = i, data = { id = i } } end
  return { items = items }
end
function on_order(ctx, input) return {} end
"""


@pytest.fixture
def poller():
    return install(
        {"poll": {**timer("1m"), "function": "poll", "emits": "order.created"},
         "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"}},
        {"main.lua": POLL_LUA},
    )


def run_poll(instance) -> HandlerRun:
    row = instance.timer_schedules.get(handler="poll")
    dispatch_due(now=row.next_run_at, send=lambda ids: None)
    run = HandlerRun.objects.filter(instance=instance, handler="poll").latest("pk")
    assert run_handler_task(run.pk) == "executed"
    run.refresh_from_db()
    return run


def posted_ids(instance) -> list[int]:
    runs = HandlerRun.objects.filter(instance=instance, handler="onOrder").order_by("pk")
    return [run.input["payload"]["id"] for run in runs]


@pytest.mark.django_db
def test_a_poll_over_the_cap_posts_the_cap_and_keeps_the_rest_for_the_next_poll(poller, settings):
    """One poll returning 9,000 ids once queued 9,000 runs; scaled down: 30 ids, cap 10."""
    settings.JUNCTION_POLL_MAX_ITEMS = 10
    run = run_poll(poller)

    assert run.status == RunStatus.SUCCEEDED
    assert posted_ids(poller) == list(range(1, 11))
    assert SeenItem.objects.filter(instance=poller).count() == 10
    warning = run.logs[-1]
    assert warning["level"] == "warn" and warning["fields"] == {"posted": 10, "waiting": 20}
    assert "JUNCTION_POLL_MAX_ITEMS" in warning["message"]

    run_poll(poller)
    assert posted_ids(poller) == list(range(1, 21))


@pytest.mark.django_db
def test_a_poll_posts_no_more_than_the_queue_has_room_for(poller, settings):
    settings.JUNCTION_POLL_MAX_ITEMS = 100
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 5
    run = run_poll(poller)
    assert posted_ids(poller) == [1, 2, 3, 4, 5]
    assert "queue had room for 5" in run.logs[-1]["message"]
    assert SeenItem.objects.filter(instance=poller).count() == 5


# --- Queued runs per instance --------------------------------------------------------------------

EVENT_LUA = """
function on_order(ctx, input) return {} end
"""
EVENT_HANDLERS = {
    "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"},
    "alsoOnOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"},
}


@pytest.mark.django_db
def test_post_event_refuses_an_event_the_queue_has_no_room_for(settings):
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 3
    instance = install(EVENT_HANDLERS, {"main.lua": EVENT_LUA})
    assert len(post_event(instance=instance, event="order.created", payload={"id": 1})) == 2

    with pytest.raises(QuotaExceeded) as refused:
        post_event(instance=instance, event="order.created", payload={"id": 2})  # 4 > 3: refused whole
    assert refused.value.code == "queue_full"
    assert "2 runs waiting, at most 3" in refused.value.message
    assert HandlerRun.objects.filter(instance=instance).count() == 2

    HandlerRun.objects.filter(instance=instance).update(status=RunStatus.SUCCEEDED)  # the workers caught up
    assert len(post_event(instance=instance, event="order.created", payload={"id": 3})) == 2


@pytest.mark.django_db
def test_the_webhook_answers_429_when_the_queue_is_full(settings):
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 2
    instance = install(EVENT_HANDLERS, {"main.lua": EVENT_LUA})
    client = Client()
    url = f"/hooks/{instance.webhook_token}/order.created"
    assert client.post(url, data=b'{"id": 1}', content_type="application/json").status_code == 202

    response = client.post(url, data=b'{"id": 2}', content_type="application/json")

    assert response.status_code == 429
    assert response["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "queue_full"
    assert HandlerRun.objects.filter(instance=instance).count() == 2


@pytest.mark.django_db
def test_timer_slots_beyond_the_queue_cap_are_recorded_not_queued(settings, django_capture_on_commit_callbacks):
    """2,000 timers of one instance once queued 200 runs/s; scaled down: 12 timers due at
    once, cap 5: five runs queued and sent, seven slots recorded as queue_full, none sent."""
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 5
    instance = install({f"t{i}": timer("1m") for i in range(12)})
    due = max(instance.timer_schedules.values_list("next_run_at", flat=True))
    sent = []

    with django_capture_on_commit_callbacks(execute=True):
        report = dispatch_due(now=due, send=sent.extend)

    assert (report.claimed, report.enqueued, report.skipped_full) == (12, 5, 7)
    queued = HandlerRun.objects.filter(instance=instance, status=RunStatus.QUEUED)
    skipped = HandlerRun.objects.filter(instance=instance, status=RunStatus.FAILED, error_code="queue_full")
    assert sorted(sent) == sorted(queued.values_list("pk", flat=True)) and len(sent) == 5
    assert skipped.count() == 7
    assert all(run.idempotency_key.startswith("timer:") and run.finished_at for run in skipped)
    assert not instance.timer_schedules.filter(next_run_at__lte=due).exists()  # every slot moved on


# --- run_handler meets the same quotas -----------------------------------------------------------

def run_handler(package: Path, handler: str, *args, env: dict | None = None) -> tuple[int, list[dict]]:
    import os

    proc = subprocess.run(
        [sys.executable, "manage.py", "run_handler", str(package), handler, *args, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


@pytest.fixture
def fill_package(tmp_path) -> Path:
    folder = tmp_path / "pkg"
    folder.mkdir()
    manifest = {
        "name": "quota-test",
        "permissions": ["integration.cache", "integration.containers", "tenant.sql"],
        "dataContainerSchemas": {"beats": {"type": "object"}},
        "handlers": {
            "fill": {"type": "rpc", "file": "main.lua", "function": "fill"},
            "sort": {"type": "rpc", "file": "main.lua", "function": "sort"},
            "poll": {"type": "timer", "file": "main.lua", "function": "poll", "schedule": {"every": "1m"},
                     "emits": "order.created"},
            "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"},
        },
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "main.lua").write_text(FILL_LUA + POLL_LUA + """
function sort(ctx, input)
  return ctx.sql("WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r LIMIT 400) "
                 .. "SELECT count(*) AS n FROM (SELECT randomblob(1000000) AS b FROM r ORDER BY b)")
end
""")
    return folder


def test_run_handler_meets_the_storage_quota(fill_package):
    code, lines = run_handler(fill_package, "fill", "--input", json.dumps({"size": 25_000, "count": 200}),
                              env={"JUNCTION_INSTANCE_STORAGE_MAX_BYTES": "1000000"})
    assert code == 1
    assert lines[0]["status"] == "failed"
    assert lines[0]["error"]["code"] == "quota_exceeded"
    assert "at most 1000000 bytes" in lines[0]["error"]["message"]


def test_run_handler_caps_what_a_tenant_query_holds_in_memory(fill_package):
    """400 MB sorted in memory: refused at a 32 MB heap limit (set in its own process, as
    the limit is process-wide)."""
    code, lines = run_handler(fill_package, "sort", env={"JUNCTION_TENANT_SQL_HEAP_MAX_BYTES": str(32 * 1024 * 1024)})
    assert code == 1
    assert lines[0]["error"]["code"] == "quota_exceeded"
    assert "memory" in lines[0]["error"]["message"]


def test_run_handler_warns_of_a_poll_over_the_cap(fill_package):
    code, lines = run_handler(fill_package, "poll", env={"JUNCTION_POLL_MAX_ITEMS": "10"})
    assert code == 0 and lines[0]["status"] == "succeeded"
    assert lines[0]["logs"][-1]["level"] == "warn"
    assert lines[0]["logs"][-1]["fields"] == {"items": 30, "cap": 10}
