"""Webhook throttling per instance: a token bucket (JUNCTION_WEBHOOK_RATE a second, bursts
of JUNCTION_WEBHOOK_BURST) shared by every web process; past it, 429 with Retry-After in
the error shape, and nothing queued."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client

from marketplace.models import HandlerRun
from runtime import throttle
from runtime.models import WebhookBucket

from .. import factories
from ..conftest import requires_postgres
from .helpers import install

LUA = "function on_order(ctx, input) return { seen = input.payload } end\n"
HANDLERS = {"onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"}}


@pytest.fixture
def instance(db):
    return install(HANDLERS, {"main.lua": LUA})


def post(instance, payload=None):
    return Client().post(f"/hooks/{instance.webhook_token}/order.created", data=json.dumps(payload or {"n": 1}),
                         content_type="application/json")


def test_past_the_burst_posts_get_429_with_retry_after_and_queue_nothing(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 0.5, 3
    assert [post(instance).status_code for _ in range(3)] == [202, 202, 202]
    refused = post(instance)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "2"  # one token back at 0.5 a second
    error = refused.json()["error"]
    assert error["code"] == "throttled" and "retry in 2 s" in error["message"] and set(refused.json()) == {"error"}
    assert HandlerRun.objects.count() == 3


def test_each_instance_has_its_own_bucket(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 0.01, 1
    other = install(HANDLERS, {"main.lua": LUA})
    assert post(instance).status_code == 202
    assert post(instance).status_code == 429
    assert post(other).status_code == 202


def test_the_bucket_refills_at_the_rate(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 1, 1
    assert [post(instance).status_code for _ in range(2)] == [202, 429]
    time.sleep(1.05)  # one token's worth at 1 a second
    assert post(instance).status_code == 202


def test_tokens_come_back_at_the_rate(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 20, 2
    now = time.time()
    # Epoch seconds as floats: equal to well under a millisecond.
    assert [throttle.take(instance.pk, now=now) for _ in range(3)] == [0, 0, pytest.approx(0.05, abs=1e-4)]
    assert throttle.take(instance.pk, now=now + 0.025) == pytest.approx(0.025, abs=1e-4)
    assert throttle.take(instance.pk, now=now + 0.051) == 0
    assert throttle.take(instance.pk, now=now + 0.051) == pytest.approx(0.05, abs=2e-3)


def test_refill_never_goes_past_the_burst(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 50, 5
    now = time.time()
    assert throttle.take(instance.pk, now=now) == 0
    # An hour idle refills five tokens, not 180,000.
    later = now + 3600
    assert [throttle.take(instance.pk, now=later) for _ in range(6)][:5] == [0] * 5
    assert throttle.take(instance.pk, now=later) == pytest.approx(1 / 50, abs=1e-4)


def test_a_clock_behind_the_last_take_refills_nothing(settings, instance):
    """Another host's clock a little behind: no tokens made up, the stamp does not move back."""
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 1, 1
    now = time.time()
    assert throttle.take(instance.pk, now=now) == 0
    assert throttle.take(instance.pk, now=now - 30) == pytest.approx(1, abs=1e-4)
    assert WebhookBucket.objects.get(pk=instance.pk).refilled_at == now


def test_rate_zero_turns_throttling_off(settings, instance):
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 0, 1
    assert {post(instance).status_code for _ in range(5)} == {202}
    assert not WebhookBucket.objects.exists()


def test_unknown_tokens_are_404_and_take_nothing(settings, instance):
    settings.JUNCTION_WEBHOOK_BURST = 1
    assert Client().post("/hooks/not-a-token/order.created", data="{}", content_type="application/json").status_code == 404
    assert not WebhookBucket.objects.exists()
    assert post(instance).status_code == 202


def test_uninstalling_removes_the_bucket(settings, instance):
    post(instance)
    assert WebhookBucket.objects.filter(pk=instance.pk).exists()
    instance.delete()
    assert not WebhookBucket.objects.exists()


@requires_postgres
def test_concurrent_posts_from_many_connections_share_one_bucket(settings, live_server):
    """Eight posts at once over HTTP (the live server's listen queue holds ten), each
    request on its own server thread and database connection: exactly the burst is
    taken, whatever the interleaving."""
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 0.001, 3
    instance = install(HANDLERS, {"main.lua": LUA})
    url = f"{live_server.url}/hooks/{instance.webhook_token}/order.created"
    statuses: list[int] = []
    start = threading.Barrier(8)

    def fire():
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                statuses.append(response.status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [202] * 3 + [429] * 5
    assert HandlerRun.objects.filter(instance=instance).count() == 3


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_racing_takes_on_a_new_and_on_a_refilled_bucket_take_exactly_the_burst(settings):
    """Sixteen connections at once, twice: first on an instance with no bucket yet (the
    creation race), then on its bucket refilled to the burst."""
    settings.JUNCTION_WEBHOOK_RATE, settings.JUNCTION_WEBHOOK_BURST = 0.001, 5
    instance = install(HANDLERS, {"main.lua": LUA})
    for _ in range(2):
        start = threading.Barrier(16)

        def take(start=start):
            start.wait()
            return throttle.take(instance.pk)

        waits = factories.in_threads(*[take] * 16)
        assert sum(1 for wait in waits if wait == 0) == 5
        assert all(isinstance(wait, float) for wait in waits)
        WebhookBucket.objects.update(tokens=5)
