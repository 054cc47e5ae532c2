"""The ctx API: each function, each permission refusal, storage scoping and TTLs.

Storage is tested on both stores: the in-memory one (command line) and the Django one
(installed instances, real database)."""
from __future__ import annotations

import itertools
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.models import CacheEntry, ContainerEntry, Instance
from runtime.stores import DjangoStore, MemoryStore
from runtime.tenant_sql import tenant_sqlite_path

from .. import factories
from .conftest import ALL_PERMISSIONS, small_limits

# (ctx call, the permission it needs)
CALLS = [
    ('ctx.device.http("printer", { path = "/" })', "device.http"),
    ('ctx.device.sql("erp", "SELECT 1", {})', "device.sql.read"),
    ('ctx.integration.cacheSet({ key = "k", value = 1 })', "integration.cache"),
    ('ctx.integration.cacheGet("k")', "integration.cache"),
    ('ctx.integration.containersSet("orders", "k", { id = 1 })', "integration.containers"),
    ('ctx.integration.containersGet("orders", "k")', "integration.containers"),
    ('ctx.integration.containersList("orders")', "integration.containers"),
    ('ctx.integration.containersDelete("orders", "k")', "integration.containers"),
    ('ctx.log.debug("x")', "log"),
    ('ctx.log.info("x")', "log"),
    ('ctx.log.warn("x")', "log"),
    ('ctx.log.error("x")', "log"),
    ('print("x")', "log"),
    ('ctx.print("x")', "log"),
    ('ctx.cache.get("k")', "tenant.cache"),
    ('ctx.cache.set("k", 1, 10)', "tenant.cache"),
    ('ctx.cache.delete("k")', "tenant.cache"),
    ('ctx.sql("SELECT 1", {})', "tenant.sql"),
]


@pytest.mark.parametrize("call, permission", CALLS)
def test_each_ctx_call_needs_its_permission(run_code, call, permission):
    others = [p for p in ALL_PERMISSIONS if p != permission]
    outcome = run_code(f"function h(ctx, input)\n  {call}\nend", permissions=others,
                       resources={"printer": {"kind": "http"}, "erp": {"kind": "sql"}})
    assert outcome.error.code == "permission_denied"
    assert f"'{permission}'" in outcome.error.message
    assert (outcome.error.file, outcome.error.line) == ("main.lua", 2)


def test_a_refusal_can_be_caught(run_code):
    outcome = run_code('function h(ctx, input) local ok, err = pcall(ctx.cache.get, "k"); return { ok, err } end',
                       permissions=["log"])
    assert outcome.result[0] is False
    assert "permission_denied" in outcome.result[1] and "'tenant.cache'" in outcome.result[1]


def test_config_and_instance(run_code):
    outcome = run_code(
        "function h(ctx, input) return { site = ctx.config.site, n = ctx.config.nested.n, id = ctx.instance.id } end",
        config={"site": "HQ", "nested": {"n": 3}},
        instance_info={"id": 7, "name": "printer", "integration": "printer-sync", "version": 2},
    )
    assert outcome.result == {"site": "HQ", "n": 3, "id": 7}


def test_logs_levels_and_fields(run_code):
    outcome = run_code(
        """function h(ctx, input)
          ctx.log.debug("d") ctx.log.info("i", { n = 1 }) ctx.log.warn("w", { list = {1, 2} })
          ctx.log.error("e") print("p", 1, nil) ctx.print("q")
        end"""
    )
    assert outcome.logs == [
        {"level": "debug", "message": "d", "fields": {}},
        {"level": "info", "message": "i", "fields": {"n": 1}},
        {"level": "warn", "message": "w", "fields": {"list": [1, 2]}},
        {"level": "error", "message": "e", "fields": {}},
        {"level": "info", "message": "p\t1\tnil", "fields": {}},
        {"level": "info", "message": "q", "fields": {}},
    ]


def test_too_many_log_lines_stop_the_run(run_code):
    outcome = run_code('function h(ctx, input) for i = 1, 100 do pcall(ctx.log.info, "x") end return "done" end',
                       limits=small_limits(log_lines=10))
    assert outcome.error.code == "log_limit"
    assert len(outcome.logs) == 10


def test_too_many_log_bytes_stop_the_run(run_code):
    outcome = run_code(
        'function h(ctx, input) ctx.log.info(string.rep("x", 600)) ctx.log.info(string.rep("y", 600)) end',
        limits=small_limits(log_bytes=1000),
    )
    assert outcome.error.code == "log_limit"
    assert [line["message"][0] for line in outcome.logs] == ["x"]


# --- instance cache and containers, on both stores ------------------------------------------

_names = itertools.count(1)


def make_instance(organization=None) -> Instance:
    return Instance.objects.create(
        organization=organization or factories.make_org(), version=factories.make_published(),
        name=f"instance-{next(_names)}",
    )


@pytest.fixture(params=["memory", "django"])
def store(request):
    if request.param == "memory":
        return MemoryStore()
    request.getfixturevalue("db")
    return DjangoStore(make_instance())


def test_cache_set_and_get(run_code, store):
    first = run_code(
        """function h(ctx, input)
          ctx.integration.cacheSet({ key = "status", value = { code = 200, tags = {"a"} }, ttl = 60 })
          ctx.integration.cacheSet({ key = "plain", value = "text" })
          return { ctx.integration.cacheGet("status"), ctx.integration.cacheGet("missing") == nil }
        end""",
        store=store,
    )
    assert first.result == [{"code": 200, "tags": ["a"]}, True], first.error
    second = run_code('function h(ctx, input) return ctx.integration.cacheGet("plain") end', store=store)
    assert second.result == "text"


@pytest.mark.django_db
def test_cache_ttl_is_honoured():
    store = DjangoStore(make_instance())
    store.cache_set("k", 1, 60)
    assert store.cache_get("k") == 1
    CacheEntry.objects.filter(key="k").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert store.cache_get("k") is None
    store.cache_set("k", 2, None)
    assert CacheEntry.objects.get(key="k").expires_at is None
    assert store.cache_get("k") == 2


def test_memory_cache_ttl_is_honoured(monkeypatch):
    store = MemoryStore()
    store.cache_set("k", 1, 60)
    later = time.time() + 61
    monkeypatch.setattr("runtime.stores.time.time", lambda: later)
    assert store.cache_get("k") is None


@pytest.mark.parametrize(
    "call, code",
    [
        ('ctx.integration.cacheSet("k")', "invalid_argument"),
        ('ctx.integration.cacheSet({ key = "", value = 1 })', "invalid_argument"),
        ('ctx.integration.cacheSet({ key = "k", value = 1, ttl = -5 })', "invalid_argument"),
        ('ctx.integration.cacheSet({ key = "k", value = string.rep("x", 5000) })', "value_too_large"),
    ],
)
def test_cache_set_refuses_bad_arguments(run_code, call, code):
    outcome = run_code(f"function h(ctx, input) {call} end", limits=small_limits(value_bytes=4000))
    assert outcome.error.code == code


def test_containers(run_code, store):
    outcome = run_code(
        """function h(ctx, input)
          ctx.integration.containersSet("orders", "b", { id = 2 })
          ctx.integration.containersSet("orders", "a", { id = 1 })
          ctx.integration.containersSet("orders", "a", { id = 10 })
          local got = ctx.integration.containersGet("orders", "a")
          local before = ctx.integration.containersList("orders")
          local deleted = ctx.integration.containersDelete("orders", "b")
          local again = ctx.integration.containersDelete("orders", "b")
          return { got = got, before = before, after = ctx.integration.containersList("orders"),
                   deleted = deleted, again = again, missing = ctx.integration.containersGet("orders", "zz") == nil }
        end""",
        store=store,
    )
    assert outcome.result == {
        "got": {"id": 10},
        "before": [{"key": "a", "value": {"id": 10}}, {"key": "b", "value": {"id": 2}}],
        "after": [{"key": "a", "value": {"id": 10}}],
        "deleted": True,
        "again": False,
        "missing": True,
    }, outcome.error


def test_container_values_are_validated(run_code):
    outcome = run_code('function h(ctx, input) ctx.integration.containersSet("orders", "k", { id = "nope" }) end')
    assert outcome.error.code == "container_invalid"
    assert "id" in outcome.error.message


def test_unknown_containers_are_refused(run_code):
    outcome = run_code('function h(ctx, input) return ctx.integration.containersGet("ghosts", "k") end')
    assert outcome.error.code == "container_unknown"


@pytest.mark.django_db
def test_containers_are_scoped_to_the_instance(run_code):
    org = factories.make_org()
    one, two = DjangoStore(make_instance(org)), DjangoStore(make_instance(org))
    run_code('function h(ctx, input) ctx.integration.containersSet("orders", "k", { id = 1 }) end', store=one)
    outcome = run_code('function h(ctx, input) return ctx.integration.containersGet("orders", "k") == nil end',
                       store=two)
    assert outcome.result is True
    assert ContainerEntry.objects.get().instance_id == one.instance_id


# --- tenant cache and tenant SQL ------------------------------------------------------------

@pytest.mark.django_db
def test_tenant_cache_is_shared_by_an_organizations_instances_only(run_code):
    acme, globex = factories.make_org(), factories.make_org()
    a1, a2, g1 = DjangoStore(make_instance(acme)), DjangoStore(make_instance(acme)), DjangoStore(make_instance(globex))
    run_code('function h(ctx, input) ctx.cache.set("report", { n = 5 }, 3600) end', store=a1)
    read = 'function h(ctx, input) return { v = ctx.cache.get("report") } end'
    assert run_code(read, store=a2).result == {"v": {"n": 5}}
    assert run_code(read, store=g1).result == {}
    entry = CacheEntry.objects.get(key="report")
    assert entry.instance_id is None and entry.organization_id == acme.pk
    deleted = run_code('function h(ctx, input) return { ctx.cache.delete("report"), ctx.cache.get("report") } end',
                       store=a2)
    assert deleted.result == [True]


@pytest.mark.django_db
def test_tenant_sql_is_per_organization(run_code, tenant_dir):
    acme, globex = factories.make_org(), factories.make_org()
    a1, a2, g1 = DjangoStore(make_instance(acme)), DjangoStore(make_instance(acme)), DjangoStore(make_instance(globex))
    created = run_code(
        """function h(ctx, input)
          ctx.sql("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)", {})
          ctx.sql("INSERT INTO notes (body) VALUES (?), (?)", { "one", "two" })
          return ctx.sql("SELECT id, body FROM notes ORDER BY id", {})
        end""",
        store=a1,
    )
    assert created.result == [{"id": 1, "body": "one"}, {"id": 2, "body": "two"}], created.error
    shared = run_code('function h(ctx, input) return #ctx.sql("SELECT * FROM notes") end', store=a2)
    assert shared.result == 2
    other = run_code('function h(ctx, input) return ctx.sql("SELECT * FROM notes") end', store=g1)
    assert other.error.code == "sql_error" and "no such table" in other.error.message
    assert tenant_sqlite_path(acme.pk).exists()
    assert tenant_sqlite_path(acme.pk).parent == tenant_dir


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{other}' AS other",
        "VACUUM INTO '{tmp}/copy.sqlite3'",
        "PRAGMA max_page_count = 1000000000",
        "PRAGMA writable_schema = ON",
        "BEGIN",
        "SELECT load_extension('x')",
        "CREATE VIRTUAL TABLE v USING fts5(x)",
    ],
)
def test_tenant_sql_cannot_reach_another_organizations_file(run_code, tenant_dir, tmp_path, statement):
    acme, globex = factories.make_org(), factories.make_org()
    run_code(
        "function h(ctx, input) ctx.sql('CREATE TABLE secrets (v TEXT)') ctx.sql(\"INSERT INTO secrets VALUES ('s')\") end",
        store=DjangoStore(make_instance(globex)),
    )
    query = statement.format(other=tenant_sqlite_path(globex.pk), tmp=tmp_path)
    outcome = run_code(f"function h(ctx, input) return ctx.sql([[{query}]]) end",
                       store=DjangoStore(make_instance(acme)))
    assert outcome.error.code == "sql_error", outcome.error
    assert not (tmp_path / "copy.sqlite3").exists()


def test_memory_store_tenant_sql_is_shared_between_runs(run_code):
    store = MemoryStore()
    run_code('function h(ctx, input) ctx.sql("CREATE TABLE t (x)") ctx.sql("INSERT INTO t VALUES (?)", {42}) end',
             store=store)
    assert run_code('function h(ctx, input) return ctx.sql("SELECT x FROM t")[1].x end', store=store).result == 42
