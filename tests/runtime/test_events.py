"""Events: post_event, the per-instance webhook URL, and polling timers (``emits``)."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import InvalidInput
from marketplace.models import ContainerEntry, HandlerRun
from marketplace.services.installs import set_instance_enabled
from runtime.dispatcher import dispatch_due
from runtime.events import post_event
from runtime.models import SeenItem
from runtime.tasks import run_handler_task

from .helpers import install, timer

pytestmark = pytest.mark.django_db

EVENT_LUA = """
function on_order(ctx, input)
  ctx.integration.containersSet("beats", "order-" .. tostring(input.payload.id), { event = input.event, payload = input.payload })
  return { seen = input.payload.id }
end
function on_other(ctx, input) return {} end
function tick(ctx, input) return { ok = true } end

-- A polling timer: each run returns the items 1..n where n grows by 2 per run.
function poll(ctx, input)
  local n = (ctx.integration.cacheGet("n") or 0) + 2
  ctx.integration.cacheSet({ key = "n", value = n })
  local items = {}
  for i = 1, n do items[#items + 1] = { id = i, data = { id = i, total = n } } end
  return { items = items }
end
"""

HANDLERS = {
    "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"},
    "alsoOnOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_other"},
    "onOther": {"type": "event", "event": "order.deleted", "file": "main.lua", "function": "on_other"},
    "tick": timer("1h"),
}


@pytest.fixture
def instance():
    return install(HANDLERS, {"main.lua": EVENT_LUA})


@pytest.fixture
def eager():
    """Tasks sent on commit run in this process (the broker is exercised by test_celery_e2e)."""
    from marketplace.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


# --- post_event -----------------------------------------------------------------------------

def test_post_event_queues_a_run_per_matching_handler(instance):
    runs = post_event(instance=instance, event="order.created", payload={"id": 7})
    assert sorted(r.handler for r in runs) == ["alsoOnOrder", "onOrder"]
    for run in runs:
        run.refresh_from_db()
        assert (run.trigger, run.status, run.input) == (
            Trigger.EVENT, RunStatus.QUEUED, {"event": "order.created", "payload": {"id": 7}})


def test_an_event_nobody_handles_or_a_disabled_instance_queues_nothing(instance):
    assert post_event(instance=instance, event="order.shipped", payload=None) == []
    set_instance_enabled(instance=instance, enabled=False)
    assert post_event(instance=instance, event="order.created", payload={"id": 1}) == []
    assert not HandlerRun.objects.exists()


@pytest.mark.parametrize("name", ["", "-x", "a b", "é", "x" * 101, "a/b", None])
def test_bad_event_names_are_refused(instance, name):
    with pytest.raises(InvalidInput):
        post_event(instance=instance, event=name, payload={})


def test_posted_events_run_through_the_task(instance, eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        runs = post_event(instance=instance, event="order.created", payload={"id": 7})
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED
    assert ContainerEntry.objects.get(instance=instance, key="order-7").value == {
        "event": "order.created", "payload": {"id": 7}}


# --- the webhook ----------------------------------------------------------------------------

def hook(instance, event="order.created") -> str:
    return f"/hooks/{instance.webhook_token}/{event}"


def test_webhook_queues_the_event_and_answers_202_with_run_ids(instance):
    client = Client(enforce_csrf_checks=True)  # called by other systems: CSRF-exempt
    response = client.post(hook(instance), data=json.dumps({"id": 9}), content_type="application/json")
    assert response.status_code == 202
    ids = response.json()["runs"]
    assert len(ids) == 2
    assert {r.input["payload"]["id"] for r in HandlerRun.objects.filter(pk__in=ids)} == {9}


def test_webhook_runs_the_handlers_end_to_end(instance, eager, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = Client().post(hook(instance), data=b'{"id": 3}', content_type="application/json")
    assert response.status_code == 202
    assert ContainerEntry.objects.get(instance=instance, key="order-3").value["payload"] == {"id": 3}


def test_webhook_refusals(instance, settings):
    client = Client()
    assert client.post("/hooks/not-a-token/order.created", data=b"{}", content_type="application/json").status_code == 404
    assert client.post(hook(instance), data=b"{nope", content_type="application/json").status_code == 400
    assert client.post(hook(instance, "bad event!"), data=b"{}", content_type="application/json").status_code == 400
    assert client.get(hook(instance)).status_code == 405
    settings.JUNCTION_WEBHOOK_MAX_BYTES = 100
    big = json.dumps({"x": "y" * 200})
    assert client.post(hook(instance), data=big, content_type="application/json").status_code == 413
    assert not HandlerRun.objects.exists()


def test_webhook_of_a_disabled_instance_accepts_and_runs_nothing(instance):
    set_instance_enabled(instance=instance, enabled=False)
    response = Client().post(hook(instance), data=b"{}", content_type="application/json")
    assert (response.status_code, response.json()["runs"]) == (202, [])


def test_an_empty_body_is_a_null_payload(instance):
    response = Client().post(hook(instance), data=b"", content_type="application/json")
    assert response.status_code == 202
    assert HandlerRun.objects.filter(handler="onOrder").get().input == {"event": "order.created", "payload": None}


# --- polling timers -------------------------------------------------------------------------

@pytest.fixture
def poller():
    handlers = {**HANDLERS, "poll": {**timer("1m"), "function": "poll", "emits": "order.created"}}
    return install(handlers, {"main.lua": EVENT_LUA})


def run_poll(instance, now) -> HandlerRun:
    row = instance.timer_schedules.get(handler="poll")
    dispatch_due(now=max(now, row.next_run_at), send=lambda ids: None)
    run = HandlerRun.objects.filter(instance=instance, handler="poll").latest("pk")
    assert run_handler_task(run.pk) == "executed"
    return run


def posted_ids(instance) -> list[int]:
    return [r.input["payload"]["id"] for r in HandlerRun.objects.filter(instance=instance, handler="onOrder").order_by("pk")]


def test_a_polling_timer_posts_each_new_item_once(poller):
    from django.utils import timezone

    run_poll(poller, timezone.now())  # items 1, 2
    assert posted_ids(poller) == [1, 2]
    run_poll(poller, timezone.now())  # items 1..4: only 3 and 4 are new
    assert posted_ids(poller) == [1, 2, 3, 4]
    run = HandlerRun.objects.filter(instance=poller, handler="onOrder").latest("pk")
    assert run.input == {"event": "order.created", "payload": {"id": 4, "total": 4}}
    # A redelivered poll run posts nothing again.
    first_poll = HandlerRun.objects.filter(handler="poll").earliest("pk")
    run_handler_task(first_poll.pk)
    assert posted_ids(poller) == [1, 2, 3, 4]


def test_remembered_ids_are_bounded_oldest_forgotten_first(poller, settings):
    from django.utils import timezone

    settings.JUNCTION_POLL_SEEN_MAX = 3
    run_poll(poller, timezone.now())  # 1, 2
    run_poll(poller, timezone.now())  # 3, 4 new; 1 forgotten
    assert sorted(SeenItem.objects.filter(instance=poller).values_list("item_id", flat=True)) == ["2", "3", "4"]
    run_poll(poller, timezone.now())  # returns 1..6: 1 is new again (forgotten), 5 and 6 new
    assert posted_ids(poller) == [1, 2, 3, 4, 1, 5, 6]
    assert SeenItem.objects.filter(instance=poller).count() == 3
