"""Running an instance's handlers over HTTP: ping, RPC calls (input checked before a run
is made; the sandbox runs isolated, so a stuck handler ends as a timeout), events, and
reading its storage."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import InstanceState, RunStatus, Trigger
from marketplace.models import HandlerRun, Instance

from .. import factories
from ..runtime.helpers import install, timer

pytestmark = pytest.mark.django_db

LUA = """
function echo(ctx, input)
  ctx.log.info("echo", { n = input.n })
  return { doubled = input.n * 2 }
end
function boom(ctx, input) error("the printer is on fire") end
function pong(ctx, input) return { pong = true } end
function spin(ctx, input) while true do end end
function tick(ctx, input) return {} end
"""
ECHO_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
               "additionalProperties": False}
HANDLERS = {
    "echo": {"type": "rpc", "file": "main.lua", "function": "echo", "inputSchema": ECHO_SCHEMA},
    "boom": {"type": "rpc", "file": "main.lua", "function": "boom"},
    "spin": {"type": "rpc", "file": "main.lua", "function": "spin", "limits": {"timeoutMs": 300}},
    "ping": {"type": "lifecycle", "on": "ping", "file": "main.lua", "function": "pong"},
    "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "tick"},
    "alsoOnOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "tick"},
    "tick": timer(),
}


@pytest.fixture
def instance(acme):
    return install(HANDLERS, {"main.lua": LUA}, organization=acme, name="caller")


def url(instance, tail: str) -> str:
    return f"/api/v1/instances/{instance.pk}/{tail}"


# --- RPC -------------------------------------------------------------------------------------

def test_rpc_runs_the_handler_now_and_answers_its_outcome(api, member, instance):
    response = api(member).post(url(instance, "rpc/echo/"), {"n": 21}, format="json")
    assert response.status_code == 200, response.json()
    run = HandlerRun.objects.get()
    assert response.json() == {
        "status": "succeeded", "result": {"doubled": 42}, "error": None,
        "logs": [{"level": "info", "message": "echo", "fields": {"n": 21}}],
        "duration_ms": run.duration_ms, "run": run.pk, "handler": "echo",
    }
    assert (run.trigger, run.input) == (Trigger.RPC, {"n": 21})


def test_a_failing_handler_is_a_200_with_its_error(api, member, instance):
    body = api(member).post(url(instance, "rpc/boom/"), format="json").json()
    assert body["status"] == "failed" and body["result"] is None
    assert body["error"]["code"] == "lua_error" and "the printer is on fire" in body["error"]["message"]
    assert body["error"]["file"] == "main.lua" and isinstance(body["error"]["line"], int)


def test_a_stuck_handler_cannot_hold_the_request_past_its_limit(api, member, instance, settings):
    settings.JUNCTION_RUNTIME_KILL_MARGIN_MS = 300
    body = api(member).post(url(instance, "rpc/spin/"), format="json").json()
    assert (body["status"], body["error"]["code"]) == ("failed", "timeout")


@pytest.mark.parametrize("payload, fields", [
    ({"n": "seven"}, {"input.n"}),
    ({}, {"input.n"}),
    ({"n": 1, "extra": True}, {"input"}),
    ([1, 2], {"input"}),
])
def test_input_breaking_the_input_schema_is_400_and_makes_no_run(api, member, instance, payload, fields):
    response = api(member).post(url(instance, "rpc/echo/"), payload, format="json")
    assert response.status_code == 400, response.json()
    assert set(response.json()["error"]["fields"]) == fields
    assert not HandlerRun.objects.exists()


def test_input_the_platform_cannot_store_is_400(api, member, instance):
    client = api(member)
    for raw in ('{"n": NaN}', '{"n": 1, "n": 2}'):
        response = client.post(url(instance, "rpc/echo/"), data=raw, content_type="application/json")
        assert response.status_code == 400, raw
        assert response.json()["error"]["code"] == "parse_error"
    assert not HandlerRun.objects.exists()


def test_rpc_refusals(api, member, instance):
    client = api(member)
    for handler in ("nope", "ping", "tick"):  # not a handler; handlers of other types
        response = client.post(url(instance, f"rpc/{handler}/"), {}, format="json")
        assert response.status_code == 404, handler
    Instance.objects.filter(pk=instance.pk).update(enabled=False)
    disabled = client.post(url(instance, "rpc/echo/"), {"n": 1}, format="json")
    assert disabled.status_code == 409 and "disabled" in disabled.json()["error"]["message"]
    Instance.objects.filter(pk=instance.pk).update(enabled=True, state=InstanceState.UPGRADING)
    assert client.post(url(instance, "rpc/echo/"), {"n": 1}, format="json").status_code == 409
    assert not HandlerRun.objects.exists()


# --- Ping ------------------------------------------------------------------------------------

def test_ping_runs_the_ping_handlers_now(api, member, instance):
    response = api(member).post(url(instance, "ping/"))
    assert response.status_code == 200
    run = HandlerRun.objects.get()
    assert response.json()["runs"] == [{
        "status": "succeeded", "result": {"pong": True}, "error": None, "logs": [], "duration_ms": run.duration_ms,
        "run": run.pk, "handler": "ping",
    }]
    assert run.trigger == Trigger.LIFECYCLE


def test_ping_without_a_ping_handler_runs_nothing_and_a_failed_install_is_409(api, member, acme):
    silent = install(organization=acme, name="silent")
    client = api(member)
    assert client.post(url(silent, "ping/")).json() == {"runs": []}
    Instance.objects.filter(pk=silent.pk).update(state=InstanceState.FAILED)
    assert client.post(url(silent, "ping/")).status_code == 409


# --- Events ----------------------------------------------------------------------------------

def test_an_event_queues_a_run_per_handler(api, member, instance):
    response = api(member).post(url(instance, "events/order.created/"), {"id": 7}, format="json")
    assert response.status_code == 202, response.json()
    runs = HandlerRun.objects.order_by("pk")
    assert response.json() == {"event": "order.created", "runs": [run.pk for run in runs]}
    assert {(r.handler, r.status, r.trigger) for r in runs} == {
        ("onOrder", RunStatus.QUEUED, Trigger.EVENT), ("alsoOnOrder", RunStatus.QUEUED, Trigger.EVENT)}
    assert runs[0].input == {"event": "order.created", "payload": {"id": 7}}


def test_event_refusals_and_no_listener(api, member, instance, settings):
    client = api(member)
    assert client.post(url(instance, "events/nobody.listens/"), {}, format="json").json()["runs"] == []
    bad = client.post(url(instance, "events/%20bad/"), {}, format="json")
    assert bad.status_code == 400 and "event" in bad.json()["error"]["fields"]
    settings.JUNCTION_INSTANCE_MAX_QUEUED_RUNS = 1
    full = client.post(url(instance, "events/order.created/"), {}, format="json")
    assert full.status_code == 429 and full.json()["error"]["code"] == "queue_full"
    Instance.objects.filter(pk=instance.pk).update(state=InstanceState.UNINSTALLING)
    assert client.post(url(instance, "events/order.created/"), {}, format="json").json()["error"]["code"] == "not_live"
    assert not HandlerRun.objects.exists()


def test_an_empty_body_is_a_null_payload(api, member, instance):
    assert api(member).post(url(instance, "events/order.created/")).status_code == 202
    assert {run.input["payload"] for run in HandlerRun.objects.all()} == {None}


# --- Storage ---------------------------------------------------------------------------------

def test_storage_lists_containers_and_live_cache_entries(api, member, instance, acme):
    factories.make_container_entry(instance, container="beats", key="b", value={"n": 2})
    factories.make_container_entry(instance, container="beats", key="a", value={"n": 1})
    factories.make_cache_entry(instance, key="fresh", value="yes")
    stale = factories.make_cache_entry(instance, key="stale", value="no")
    stale.expires_at = timezone.now() - timedelta(seconds=1)
    stale.save()
    factories.make_cache_entry(organization=acme, key="tenant-wide", value=1)  # not the instance's
    other = install(organization=acme, name="other")
    factories.make_container_entry(other, container="beats", key="other")

    body = api(member).get(url(instance, "storage/")).json()
    assert [(e["container"], e["key"], e["value"]) for e in body["containers"]] == [
        ("beats", "a", {"n": 1}), ("beats", "b", {"n": 2})]
    assert [(e["key"], e["value"]) for e in body["cache"]] == [("fresh", "yes")]
    only = api(member).get(url(instance, "storage/"), {"container": "nothing"}).json()
    assert only["containers"] == []
