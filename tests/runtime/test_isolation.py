"""The web backstop (runtime.isolation): runs executed for a request or a command run their
sandbox in a forked child that is killed at the run's limit plus a margin; the child never
reaches the database (its ctx calls are performed by the parent).

Where a test needs code the sandbox cannot interrupt whatever holes the standard library
has left, the child's proxy host is made to block in Python on one ctx call (as a loop
inside a C function would: no hook runs there); one test uses a real Lua C loop."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from marketplace.choices import RunStatus, Trigger
from marketplace.models import ContainerEntry, HandlerRun
from runtime import isolation
from runtime.execution import run_spec
from runtime.stores import MemoryStore
from runtime.worker import run_now

from .conftest import make_manifest, small_limits
from .helpers import install

ROOT = Path(__file__).resolve().parents[2]

STUCK_LUA = """
function h(ctx, input)
  ctx.log.info("before")
  ctx.log.warn("stuck here")
  return { unreachable = true }
end
"""
# string.rep of an empty string loops inside C once per repetition, never reaching the hook
# (issue 9). Should the sandbox come to refuse it, the run fails with that refusal instead.
C_LOOP_LUA = """
function h(ctx, input)
  return { n = #string.rep("", math.maxinteger) }
end
"""
FAST = {"timeoutMs": 1000}


@pytest.fixture
def stuck_child(monkeypatch):
    """The child's ``ctx.log.warn`` never returns, blocking in Python inside the child."""

    class Stuck(isolation._ProxyHost):
        def call(self, name, args, deadline):
            if name == "log.warn":
                time.sleep(3600)
            return super().call(name, args, deadline)

    monkeypatch.setattr(isolation, "_ProxyHost", Stuck)
    monkeypatch.setattr(isolation, "kill_margin_ms", lambda: 300)


def children() -> list[int]:
    """Live or zombie processes whose parent is this one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def handlers(**extra) -> dict:
    return {"h": {"type": "rpc", "file": "main.lua", "function": "h", "limits": FAST}, **extra}


@pytest.mark.django_db
def test_a_run_stuck_where_the_sandbox_cannot_reach_is_killed_and_recorded_as_timeout(stuck_child):
    instance = install(handlers(), {"main.lua": STUCK_LUA}, name="stuck")
    before = children()

    run = run_now(instance=instance, handler="h", input={}, trigger=Trigger.RPC)

    run.refresh_from_db()
    assert (run.status, run.error_code) == (RunStatus.FAILED, "timeout")
    assert "stopped by the platform's backstop" in run.error_message
    assert run.result is None and run.finished_at is not None
    assert run.duration_ms >= 1000  # not before the run's own limit
    assert [line["message"] for line in run.logs] == ["before"]  # kept by the parent
    assert children() == before  # the child was killed and reaped


@pytest.mark.django_db
def test_a_lua_loop_inside_c_through_run_now_never_succeeds_and_the_caller_is_free_again(settings):
    settings.JUNCTION_RUNTIME_KILL_MARGIN_MS = 300
    instance = install(handlers(), {"main.lua": C_LOOP_LUA}, name="c-loop")

    run = run_now(instance=instance, handler="h", input={}, trigger=Trigger.RPC)

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    if run.error_code == "timeout":
        assert "backstop" in run.error_message or "time limit" in run.error_message
    else:  # the sandbox refuses this one itself now
        assert run.error_code not in ("", "internal_error")


@pytest.mark.django_db
def test_ctx_calls_are_performed_by_the_parent_inside_its_transaction():
    """The test's transaction is not committed and the SQLite test database lives in this
    process's memory: only the parent can see or write it. Any query made by another
    process through Django fails the run."""
    lua = """
    function h(ctx, input)
      ctx.integration.containersSet("beats", "k", { n = input.n })
      ctx.integration.cacheSet({ key = "c", value = "cached" })
      local got = ctx.integration.containersGet("beats", "k")
      return { n = got.n, cached = ctx.integration.cacheGet("c"), entries = #ctx.integration.containersList("beats") }
    end
    """
    instance = install(handlers(), {"main.lua": lua}, name="writer")
    parent = os.getpid()

    def only_here(execute, sql, params, many, context):
        if os.getpid() != parent:
            raise AssertionError("a child process reached the database")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(only_here):
        run = run_now(instance=instance, handler="h", input={"n": 7}, trigger=Trigger.RPC)

    assert (run.status, run.result) == (RunStatus.SUCCEEDED, {"n": 7, "cached": "cached", "entries": 1})
    assert ContainerEntry.objects.get(instance=instance, container="beats", key="k").value == {"n": 7}


def test_a_run_from_a_request_thread_is_isolated_too(stuck_child):
    """Threaded web servers run requests outside the main thread; the fork happens there."""
    outcomes = []

    def request():
        outcomes.append(run_spec(
            manifest=make_manifest(), files={"main.lua": STUCK_LUA}, handler="h", input={}, config={},
            instance_info={}, store=MemoryStore(), devices={}, limits=small_limits(timeout_ms=1000), isolated=True,
        ))

    thread = threading.Thread(target=request)
    thread.start()
    thread.join(timeout=30)
    (outcome,) = outcomes
    assert (outcome.error.code, [line["message"] for line in outcome.logs]) == ("timeout", ["before"])


SNIPPETS = [
    'function h(ctx, input) ctx.log.info("hi", { a = input.a }); return { a = input.a, c = ctx.config.c } end',
    'function h(ctx, input) local lib = require("lib"); return lib.twice(input.a) end',
    'function h(ctx, input) ctx.integration.containersSet("orders", "1", { id = "x" }) end',
    'function h(ctx, input) return select(2, pcall(ctx.device.http, "nope", {})) end',
    'function h(ctx, input) ctx.cache.set("k", { 1, 2, { x = 0.5 } }); return ctx.cache.get("k") end',
    'function h(ctx, input) local x = nil; return x.field end',
    'function h(ctx, input) while true do end end',
    'function h(ctx, input) for i = 1, 600 do print(i) end end',
    'function h(ctx, input) return { s = "\\u{1F600}", f = 1.5, big = 2^53, neg = -0.0 } end',
    'function h(ctx, input) return function() end end',
]


@pytest.mark.parametrize("source", SNIPPETS)
def test_an_isolated_run_ends_as_the_same_run_in_process(source):
    def run(isolated):
        return run_spec(
            manifest=make_manifest(), files={"main.lua": source, "lib.lua": "return { twice = function(n) return n * 2 end }"},
            handler="h", input={"a": 21}, config={"c": "conf"}, instance_info={"id": 1, "name": "t"},
            store=MemoryStore(), devices={}, limits=small_limits(timeout_ms=1000), isolated=isolated,
        )

    here, there = run(False), run(True)
    assert (there.status, there.result, there.error, there.logs) == (here.status, here.result, here.error, here.logs)


def test_a_child_that_dies_fails_the_run_with_internal_error_and_its_log_reaches_the_parent(monkeypatch, caplog):
    def crash(**kwargs):
        raise RuntimeError("the child broke")

    monkeypatch.setattr(isolation, "run_lua", crash)
    with caplog.at_level(logging.ERROR):
        outcome = run_spec(
            manifest=make_manifest(), files={"main.lua": "function h() end"}, handler="h", input={}, config={},
            instance_info={}, store=MemoryStore(), devices={}, limits=small_limits(timeout_ms=1000), isolated=True,
        )
    assert (outcome.status, outcome.error.code) == ("failed", "internal_error")
    assert "RuntimeError: the child broke" in caplog.text  # logged in the child, emitted here


def test_the_childs_cpu_limit_is_a_second_line(monkeypatch):
    """Should the parent not kill it, the child's RLIMIT_CPU does: still a timeout."""

    class Spinning(isolation._ProxyHost):
        def call(self, name, args, deadline):
            while True:
                pass

    monkeypatch.setattr(isolation, "_ProxyHost", Spinning)
    monkeypatch.setattr(isolation, "_cpu_seconds", lambda wall: 1)
    outcome = isolation.run_isolated(
        source={"main.lua": STUCK_LUA}, file="main.lua", function="h", input={},
        host=_host(), limits=small_limits(timeout_ms=1000), margin_ms=60_000,
    )
    assert (outcome.status, outcome.error.code) == ("failed", "timeout")
    assert "backstop" in outcome.error.message


def _host():
    from runtime.ctx import Ctx

    return Ctx(manifest=make_manifest(), config={}, instance_info={}, store=MemoryStore(), devices={},
               limits=small_limits(timeout_ms=1000))


PING_HANDLERS = {"ping": {"type": "lifecycle", "on": "ping", "file": "main.lua", "function": "h", "limits": FAST}}


@pytest.mark.django_db
def test_the_console_ping_of_a_stuck_handler_ends_timeout(stuck_child, publisher, acme):
    instance = install(PING_HANDLERS, {"main.lua": STUCK_LUA}, organization=acme, name="pinged")
    client = Client()
    client.force_login(publisher)

    response = client.post(
        reverse("admin:marketplace_instance_changelist"),
        {"action": "ping", "_selected_action": [instance.pk]}, follow=True,
    )

    run = HandlerRun.objects.get(instance=instance, handler="ping")
    assert (run.status, run.error_code) == (RunStatus.FAILED, "timeout")
    assert f"Ping of pinged failed (run #{run.pk})" in response.content.decode()


def test_run_handler_stops_a_handler_stuck_inside_c_and_keeps_its_contract(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    manifest = {"name": "c-loop", "permissions": ["log"], "handlers": handlers(ok={"type": "rpc", "file": "main.lua",
                                                                                   "function": "ok"})}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "main.lua").write_text(C_LOOP_LUA + '\nfunction ok(ctx, input) return { ok = true } end\n')

    proc = subprocess.run(
        [sys.executable, "manage.py", "run_handler", str(folder), "h,ok", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "JUNCTION_RUNTIME_KILL_MARGIN_MS": "300"},
    )

    stuck, ok = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr
    assert set(stuck) == {"status", "result", "error", "logs", "duration_ms"}
    assert stuck["status"] == "failed" and stuck["result"] is None
    assert stuck["error"]["code"] not in ("internal_error",)
    assert ok["status"] == "succeeded" and ok["result"] == {"ok": True}  # the next handler still runs


def test_large_values_cross_both_ways_unchanged(device_server):
    from runtime.devices import DeviceSpec

    lua = """
    function h(ctx, input)
      local r = ctx.device.http("api", { path = "/big" })
      ctx.log.info(string.rep("y", 60000))
      return { n = #r.body, s = string.rep("z", 200000) }
    end
    """

    def run(isolated):
        return run_spec(
            manifest=make_manifest(resources={"api": {"kind": "http"}}), files={"main.lua": lua}, handler="h",
            input={}, config={}, instance_info={}, store=MemoryStore(),
            devices={"api": DeviceSpec.from_target(device_server.url)}, limits=small_limits(timeout_ms=3000),
            isolated=isolated,
        )

    here, there = run(False), run(True)
    assert here.result["n"] == 200_000 and len(here.result["s"]) == 200_000
    assert (there.status, there.result, there.error, there.logs) == (here.status, here.result, here.error, here.logs)
