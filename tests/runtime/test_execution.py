"""execute_run and run_now: a HandlerRun row in, a recorded outcome out (real database)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import ResourceKind, RunStatus, Trigger
from marketplace.models import ContainerEntry, HandlerRun, Instance, ResourceBinding
from marketplace.validators import sqlite_device_folder
from runtime.execution import LAST_RUN_AT_GRANULARITY, clear_program_cache
from runtime.worker import execute_run, process_run, run_now

from .. import factories

LUA = """
function sync(ctx, input)
  local rows = ctx.device.sql("erp", "SELECT id, state FROM orders WHERE state = ? ORDER BY id", { "open" })
  for _, row in ipairs(rows) do
    ctx.integration.containersSet("orders", tostring(row.id), { id = row.id, state = row.state })
  end
  ctx.log.info("synced", { count = #rows, site = ctx.config.site })
  return { synced = #rows, key = ctx.config.apiKey, instance = ctx.instance.name, at = input.lastRunAt }
end

function broken(ctx, input)
  local x = nil
  return x.field
end

function echo(ctx, input)
  return { n = input.n, bad = input.bad }
end
"""

MANIFEST = {
    "name": "erp-sync",
    "configSchema": {
        "type": "object",
        "properties": {"site": {"type": "string"}, "apiKey": {"type": "string", "format": "password"}},
    },
    "resources": {"erp": {"kind": "sql"}},
    "permissions": ["device.sql.read", "integration.containers", "log"],
    "dataContainerSchemas": {"orders": {"type": "object", "required": ["id"]}},
    "handlers": {
        "sync": {"type": "timer", "file": "main.lua", "function": "sync", "schedule": {"every": "1m"},
                 "limits": {"timeoutMs": 5000, "memoryMb": 16}},
        "broken": {"type": "event", "event": "x", "file": "main.lua", "function": "broken"},
        "echo": {"type": "rpc", "file": "main.lua", "function": "echo",
                 "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
                 "outputSchema": {"type": "object", "properties": {"bad": {"type": "null"}}}},
    },
}


@pytest.fixture
def instance(db, sqlite_file):
    org = factories.make_org()
    version = factories.make_published(manifest=MANIFEST, files={"main.lua": LUA})
    instance = Instance.objects.create(
        organization=org, version=version, name="erp", config={"site": "HQ"}, secret_config={"apiKey": "s3cret"}
    )
    folder = sqlite_device_folder(org.pk)
    folder.mkdir(parents=True)
    sqlite_file.rename(folder / "erp.sqlite3")
    device = factories.make_device(org, ResourceKind.SQL, dsn="sqlite:///erp.sqlite3")
    ResourceBinding.objects.create(instance=instance, alias="erp", device=device)
    return instance


def queue(instance, handler, input=None, trigger=Trigger.TIMER) -> HandlerRun:
    return HandlerRun.objects.create(instance=instance, handler=handler, trigger=trigger, input=input or {})


def test_execute_run_records_a_success(instance, django_assert_max_num_queries):
    run = queue(instance, "sync", {"lastRunAt": "2026-01-01T00:00:00Z"})
    # mark running (one UPDATE), the run with its instance/version/integration, the
    # version's content (not cached yet), bindings, the outcome (one UPDATE), last_run_at
    # (empty so far): 6; 2 container writes under the storage quota, each a transaction
    # (a savepoint here) of 4 statements (lock the usage row, old size, upsert, count): 12;
    # the instance's first write creates its usage row and counts what it holds: 6
    clear_program_cache()
    with django_assert_max_num_queries(6 + 12 + 6):
        run = execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, (run.error_code, run.error_message)
    assert run.result == {"synced": 2, "key": "s3cret", "instance": "erp", "at": "2026-01-01T00:00:00Z"}
    assert run.logs == [{"level": "info", "message": "synced", "fields": {"count": 2, "site": "HQ"}}]
    assert run.starts == 1 and run.started_at and run.finished_at and run.duration_ms is not None
    assert run.error_code == "" and run.error_line is None
    assert sorted(ContainerEntry.objects.values_list("key", flat=True)) == ["1", "3"]
    instance.refresh_from_db()
    assert instance.last_run_at == run.finished_at


def test_execute_run_records_a_failure_with_its_location(instance):
    run = execute_run(queue(instance, "broken", trigger=Trigger.EVENT).pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error_code == "lua_error"
    assert "attempt to index" in run.error_message
    assert (run.error_file, run.error_line) == ("main.lua", 13)
    assert run.result is None


def test_a_handler_missing_from_the_manifest_fails_the_run(instance):
    run = execute_run(queue(instance, "ghost").pk)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "handler_not_found"


def test_a_finished_run_is_not_run_again(instance):
    run = execute_run(queue(instance, "sync").pk)
    again = execute_run(run.pk)
    again.refresh_from_db()
    assert again.starts == 1
    assert again.status == RunStatus.SUCCEEDED


def test_a_run_picked_up_again_counts_its_starts(instance):
    run = queue(instance, "sync")
    HandlerRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, starts=1)
    run = execute_run(run.pk)
    assert run.starts == 2 and run.status == RunStatus.SUCCEEDED


def test_an_unbound_device_fails_the_run_not_the_worker(instance):
    ResourceBinding.objects.filter(instance=instance).delete()
    run = execute_run(queue(instance, "sync").pk)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "unbound_alias"


def test_run_now_rpc_validates_input(instance):
    run = run_now(instance=instance, handler="echo", input={"n": "not a number"}, trigger=Trigger.RPC)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "input_invalid"
    assert "n" in run.error_message
    assert HandlerRun.objects.get(pk=run.pk).trigger == Trigger.RPC


def test_run_now_rpc_validates_output(instance):
    run = run_now(instance=instance, handler="echo", input={"n": 1, "bad": "oops"}, trigger=Trigger.RPC)
    assert run.status == RunStatus.FAILED
    assert run.error_code == "output_invalid"
    assert run.result is None


def test_run_now_rpc_succeeds(instance):
    run = run_now(instance=instance, handler="echo", input={"n": 5}, trigger=Trigger.RPC)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED
    assert run.result == {"n": 5}
    assert run.input == {"n": 5}


PLAIN_LUA = """
function handle(ctx, input)
  return { n = input.n }
end
function fail(ctx, input)
  error("nope")
end
"""


@pytest.fixture
def plain_instance(db):
    """An instance whose manifest declares no resources (no bindings to look up)."""
    version = factories.make_published(
        manifest={
            "name": "plain", "resources": {}, "permissions": ["log"],
            "handlers": {"handle": {"type": "event", "event": "x", "file": "main.lua", "function": "handle"},
                         "fail": {"type": "event", "event": "x", "file": "main.lua", "function": "fail"}},
        },
        files={"main.lua": PLAIN_LUA},
    )
    return Instance.objects.create(organization=factories.make_org(), version=version, name="plain")


def test_a_worker_run_costs_three_queries_once_its_version_is_cached(plain_instance, django_assert_max_num_queries):
    clear_program_cache()
    first = queue(plain_instance, "handle", {"n": 0}, trigger=Trigger.EVENT)
    assert process_run(first.pk) == "executed"  # loads the version's content, sets last_run_at
    run = queue(plain_instance, "handle", {"n": 1}, trigger=Trigger.EVENT)
    # claim (queued → running, started_at, starts + 1 in one UPDATE), the run with its
    # instance/version/integration, the outcome; no bindings (no resources), no content
    # (cached), no last_run_at (set less than LAST_RUN_AT_GRANULARITY ago), no follow-up
    with django_assert_max_num_queries(3):
        assert process_run(run.pk) == "executed"
    run.refresh_from_db()
    assert (run.status, run.result, run.starts) == (RunStatus.SUCCEEDED, {"n": 1}, 1)
    assert run.started_at and run.finished_at >= run.started_at
    # A failed event run whose handler declares no retry has no follow-up query either.
    failing = queue(plain_instance, "fail", trigger=Trigger.EVENT)
    with django_assert_max_num_queries(3):
        assert process_run(failing.pk) == "executed"
    assert HandlerRun.objects.get(pk=failing.pk).error_code == "lua_error"
    assert not HandlerRun.objects.filter(first_run=failing).exists()


def test_last_run_at_is_kept_to_its_granularity(plain_instance):
    first = execute_run(queue(plain_instance, "handle", {"n": 0}).pk)
    plain_instance.refresh_from_db()
    assert plain_instance.last_run_at == first.finished_at
    second = execute_run(queue(plain_instance, "handle", {"n": 1}).pk)
    plain_instance.refresh_from_db()
    assert plain_instance.last_run_at == first.finished_at  # within the granularity: not rewritten
    older = second.finished_at - LAST_RUN_AT_GRANULARITY - timedelta(seconds=1)
    Instance.objects.filter(pk=plain_instance.pk).update(last_run_at=older)
    third = execute_run(queue(plain_instance, "handle", {"n": 2}).pk)
    plain_instance.refresh_from_db()
    assert plain_instance.last_run_at == third.finished_at


def test_the_version_cache_never_serves_content_of_another_checksum(plain_instance):
    clear_program_cache()
    assert execute_run(queue(plain_instance, "handle", {"n": 1}).pk).result == {"n": 1}
    # Published content never changes through the models; simulate a row changed behind
    # their back: a new checksum must never be answered from the cache.
    changed = PLAIN_LUA.replace("{ n = input.n }", "{ n = input.n, changed = true }")
    factories.rewrite_published(plain_instance.version, files={"main.lua": changed}, checksum="x" * 64)
    assert execute_run(queue(plain_instance, "handle", {"n": 2}).pk).result == {"n": 2, "changed": True}


def test_a_run_picked_up_after_its_worker_died_is_stamped_by_the_claim(plain_instance):
    run = queue(plain_instance, "handle", {"n": 1}, trigger=Trigger.EVENT)
    HandlerRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, starts=1, started_at=timezone.now())
    assert process_run(run.pk, redelivered=True) == "executed"
    run.refresh_from_db()
    assert (run.status, run.starts) == (RunStatus.SUCCEEDED, 2)
