"""Bad webhook bodies are refused with 400 and the API's error shape, and queue nothing;
post_event refuses the same payloads from other callers. Each body here used to give a 500
or a run that failed later with internal_error."""
from __future__ import annotations

import json

import pytest
from django.test import Client

from marketplace.exceptions import InvalidInput
from marketplace.models import HandlerRun
from runtime.events import post_event

from .helpers import install

pytestmark = pytest.mark.django_db

LUA = "function on_order(ctx, input) return { seen = input.payload } end\n"


@pytest.fixture
def instance():
    return install({"onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "on_order"}},
                   {"main.lua": LUA})


def post(instance, body: bytes | str, event: str = "order.created"):
    return Client().post(f"/hooks/{instance.webhook_token}/{event}", data=body, content_type="application/json")


BAD_BODIES = {
    "nan": (b'{"a": NaN}', "json_not_finite", "NaN is not a JSON number"),
    "infinity": (b'{"a": Infinity}', "json_not_finite", "Infinity is not a JSON number"),
    "overflow": (b'{"a": 1e999}', "json_not_finite", "too large"),
    "deep": (b"[" * 100_000, "json_too_deep", "nested deeper than 64 levels"),
    "surrogate": (b'{"a": "\\ud800"}', "json_bad_string", "lone surrogate"),
    "surrogate-key": (b'{"a": {"\\udfff": 1}}', "json_bad_string", "lone surrogate"),
    "nul": (b'{"a": "\\u0000"}', "json_bad_string", "U+0000"),
    "duplicate-key": (b'{"a": 1, "a": 2}', "json_duplicate_key", "the key 'a' appears twice"),
    "syntax": (b"{nope", "json_invalid", "Expecting property name"),
    "not-utf8": (b"\xff\xfe\xfa", "json_invalid", "not UTF-8"),
}


@pytest.mark.parametrize("body, code, words", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_bodies_are_refused_with_400_and_queue_nothing(instance, body, code, words):
    response = post(instance, body)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith("the body is not valid JSON: ") and words in error["message"]
    assert not HandlerRun.objects.exists()


def test_bodies_the_platform_accepts_still_queue_their_runs(instance):
    body = json.dumps({"emoji": "\U0001F600", "nested": [[[[1.5]]]], "big": 10**30}).encode()
    response = post(instance, body)

    assert response.status_code == 202
    [run] = HandlerRun.objects.filter(pk__in=response.json()["runs"])
    run.refresh_from_db()
    assert run.input["payload"] == {"emoji": "\U0001F600", "nested": [[[[1.5]]]], "big": 10**30}


def test_the_other_refusals_have_the_api_error_shape_and_their_status(instance, settings):
    unknown = Client().post("/hooks/no-such-token/order.created", data=b"{}", content_type="application/json")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "not_found")

    bad_name = post(instance, b"{}", event="bad event!")
    assert bad_name.status_code == 400
    assert bad_name.json()["error"]["code"] == "invalid"
    assert "event" in bad_name.json()["error"]["fields"]

    settings.JUNCTION_WEBHOOK_MAX_BYTES = 10
    too_big = post(instance, b'{"a": "0123456789"}')
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "too_large")
    assert not HandlerRun.objects.exists()


@pytest.mark.parametrize("payload, words", [
    ({"a": float("nan")}, "nan is not a JSON number"),
    ({"a": ["x", "\ud800"]}, "at a[1]: a string holds a lone surrogate"),
    ({"a\x00": 1}, "a key holds U+0000"),
])
def test_post_event_refuses_payloads_the_platform_cannot_store(instance, payload, words):
    with pytest.raises(InvalidInput) as exc:
        post_event(instance=instance, event="order.created", payload=payload)

    assert list(exc.value.errors) == ["payload"]
    assert words in exc.value.message
    assert not HandlerRun.objects.exists()


def test_post_event_refuses_a_payload_nested_past_the_cap_without_recursing(instance):
    deep: list = []
    node = deep
    for _ in range(100_000):  # deeper than any recursive walk (or json.dumps) could go
        node.append([])
        node = node[0]

    with pytest.raises(InvalidInput) as exc:
        post_event(instance=instance, event="order.created", payload=deep)

    assert "nested deeper than 64 levels" in exc.value.message
