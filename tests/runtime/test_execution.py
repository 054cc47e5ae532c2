"""execute_run and run_now: a HandlerRun row in, a recorded outcome out (real database)."""
from __future__ import annotations

import pytest

from marketplace.choices import ResourceKind, RunStatus, Trigger
from marketplace.models import ContainerEntry, HandlerRun, Instance, ResourceBinding
from runtime.execution import execute_run, run_now

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
    device = factories.make_device(org, ResourceKind.SQL, dsn=f"sqlite:///{sqlite_file}")
    ResourceBinding.objects.create(instance=instance, alias="erp", device=device)
    return instance


def queue(instance, handler, input=None, trigger=Trigger.TIMER) -> HandlerRun:
    return HandlerRun.objects.create(instance=instance, handler=handler, trigger=trigger, input=input or {})


def test_execute_run_records_a_success(instance, django_assert_max_num_queries):
    run = queue(instance, "sync", {"lastRunAt": "2026-01-01T00:00:00Z"})
    # lock and mark running (4 with the transaction), instance, bindings, 2 container
    # upserts, save the outcome, last_run_at
    with django_assert_max_num_queries(10):
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
