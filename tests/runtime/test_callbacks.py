"""One-time callback URLs: ``ctx.callback.url(event, {ttl})`` mints a URL that posts the
event to the instance once; a second post, an expired URL or a wrong secret gets 404 and
posts nothing; minting is bounded per run; the static checks and run_handler know it."""
from __future__ import annotations

import json
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from marketplace.choices import InstanceState, RunStatus, Trigger
from marketplace.models import HandlerRun
from marketplace.packaging.validation import validate_content
from runtime import callbacks
from runtime.execution import run_now
from runtime.models import CallbackToken

from .. import factories
from ..conftest import requires_postgres
from ..packaging.helpers import MINI_MANIFEST
from .helpers import install, make_runtime_version

LUA = """
function mint(ctx, input)
  local urls = {}
  for i = 1, (input.count or 1) do
    local ok, url = pcall(ctx.callback.url, input.event or "order.approved", input.options)
    if not ok then return { urls = urls, error = url } end
    urls[#urls + 1] = url
  end
  return { urls = urls }
end

function on_approved(ctx, input)
  return { got = input.payload }
end
"""
HANDLERS = {
    "mint": {"type": "rpc", "file": "main.lua", "function": "mint"},
    "onApproved": {"type": "event", "event": "order.approved", "file": "main.lua", "function": "on_approved"},
}


@pytest.fixture
def instance(db):
    version = make_runtime_version(HANDLERS, {"main.lua": LUA}, permissions=["callback"])
    return install(version=version)


def mint(instance, **input) -> dict:
    run = run_now(instance=instance, handler="mint", input=input, trigger=Trigger.RPC)
    assert run.status == RunStatus.SUCCEEDED, run.error_message
    return run.result


def post(url: str, payload=None, body: bytes | None = None):
    data = body if body is not None else json.dumps({"decision": "yes"} if payload is None else payload)
    return Client().post(urlsplit(url).path, data=data, content_type="application/json")


def event_runs(instance):
    return HandlerRun.objects.filter(instance=instance, handler="onApproved")


def test_a_minted_url_posts_its_event_once(settings, instance):
    url = mint(instance)["urls"][0]
    assert url.startswith(f"{settings.JUNCTION_BASE_URL}/hooks/callback/")
    first = post(url, {"decision": "yes"})
    assert first.status_code == 202
    assert first.json()["event"] == "order.approved"
    run = event_runs(instance).get()
    assert first.json()["runs"] == [run.pk]
    assert run.input == {"event": "order.approved", "payload": {"decision": "yes"}}

    again = post(url, {"decision": "no"})
    assert again.status_code == 404 and again.json()["error"]["code"] == "not_found"
    assert event_runs(instance).count() == 1


def test_only_a_hash_of_the_secret_is_stored(instance):
    before = timezone.now()
    url = mint(instance, options={"ttl": 60})["urls"][0]
    secret = url.rsplit("/", 1)[1]
    token = CallbackToken.objects.get()
    assert len(secret) >= 40 and secret not in (token.digest, token.event)
    assert token.digest == CallbackToken.digest_of(secret)
    assert (token.instance_id, token.event, token.used_at) == (instance.pk, "order.approved", None)
    assert before + timedelta(seconds=59) < token.expires_at <= timezone.now() + timedelta(seconds=60)


def test_the_default_ttl_is_fifteen_minutes(instance):
    mint(instance)
    token = CallbackToken.objects.get()
    assert timedelta(seconds=895) < token.expires_at - token.created_at <= timedelta(seconds=900)


def test_an_expired_url_is_404_and_posts_nothing(instance):
    url = mint(instance)["urls"][0]
    CallbackToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert post(url).status_code == 404
    assert not event_runs(instance).exists()
    assert CallbackToken.objects.get().used_at is None


@pytest.mark.parametrize("path", ["/hooks/callback/not-the-secret", "/hooks/callback/x"])
def test_a_wrong_secret_is_404_and_posts_nothing(instance, path):
    url = mint(instance)["urls"][0]
    response = Client().post(path, data=b"{}", content_type="application/json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not event_runs(instance).exists()
    assert post(url).status_code == 202  # the real one still works


def test_a_refused_post_leaves_the_url_good(instance, settings):
    url = mint(instance)["urls"][0]
    assert post(url, body=b"{nope").status_code == 400
    settings.JUNCTION_WEBHOOK_MAX_BYTES = 10
    assert post(url, {"x": "y" * 50}).status_code == 413
    settings.JUNCTION_WEBHOOK_MAX_BYTES = 256 * 1024
    type(instance).objects.filter(pk=instance.pk).update(state=InstanceState.UPGRADING)
    busy = post(url)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "not_live" and busy["Retry-After"]
    assert CallbackToken.objects.get().used_at is None and not event_runs(instance).exists()
    type(instance).objects.filter(pk=instance.pk).update(state=InstanceState.ACTIVE)
    assert post(url).status_code == 202
    assert CallbackToken.objects.get().used_at is not None


def test_get_is_not_allowed(instance):
    url = mint(instance)["urls"][0]
    assert Client().get(urlsplit(url).path).status_code == 405
    assert CallbackToken.objects.get().used_at is None


def test_minting_is_bounded_per_run(settings, instance):
    settings.JUNCTION_CALLBACK_MAX_PER_RUN = 2
    result = mint(instance, count=3)
    assert len(result["urls"]) == 2
    assert "quota_exceeded: a run mints at most 2 callback URLs" in result["error"]
    assert CallbackToken.objects.count() == 2
    assert len(mint(instance, count=2)["urls"]) == 2  # the next run has its own allowance


@pytest.mark.parametrize("event, options, words", [
    ("bad event!", None, "an event name is"),
    ("order.approved", {"ttl": 0}, "ttl must be 1 to"),
    ("order.approved", {"ttl": 10**9}, "ttl must be 1 to"),
    ("order.approved", {"ttl": "soon"}, "ttl must be 1 to"),
    ("order.approved", "900", "options must be a table"),
])
def test_bad_arguments_are_invalid_argument_and_mint_nothing(instance, event, options, words):
    result = mint(instance, event=event, options=options)
    assert not result["urls"] and "invalid_argument: ctx.callback.url: " in result["error"]
    assert words in result["error"]
    assert not CallbackToken.objects.exists()


def test_uninstalling_deletes_the_tokens(instance):
    url = mint(instance)["urls"][0]
    instance.delete()
    assert not CallbackToken.objects.exists()
    assert post(url).status_code == 404


def test_housekeeping_prunes_tokens_a_day_past_expiry(instance):
    mint(instance, count=3)
    now = timezone.now()
    old, recent, _ = CallbackToken.objects.order_by("pk")
    CallbackToken.objects.filter(pk=old.pk).update(expires_at=now - timedelta(days=1, seconds=1))
    CallbackToken.objects.filter(pk=recent.pk).update(expires_at=now - timedelta(hours=23))
    assert callbacks.prune(now=now) == 1
    assert not CallbackToken.objects.filter(pk=old.pk).exists()


@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_posts_of_one_url_post_the_event_once():
    """Eight requests at once, each on its own thread and connection: one 202, seven 404s,
    one run. The claim is one conditional UPDATE; PostgreSQL re-checks ``used_at`` once the
    winner commits."""
    version = make_runtime_version(HANDLERS, {"main.lua": LUA}, permissions=["callback"])
    instance = install(version=version)
    for _ in range(3):
        url = mint(instance)["urls"][0]
        start = threading.Barrier(8)

        def fire(start=start, url=url):
            start.wait()
            return post(url).status_code

        statuses = factories.in_threads(*[fire] * 8)
        assert sorted(statuses) == [202] + [404] * 7
    assert event_runs(instance).count() == 3


# --- Static checks ----------------------------------------------------------------------------

def test_the_static_checker_knows_the_permission_it_needs():
    source = 'function sync(ctx, input)\n  ctx.log.info("x")\n  return ctx.callback.url("done", { ttl = 60 })\nend\n'
    report = validate_content({**MINI_MANIFEST, "permissions": ["log"]}, {"main.lua": source})
    assert [(i.code, i.line, i.message) for i in report.errors] == [
        ("permission_missing", 3, "ctx.callback.url needs the permission 'callback'; add it to permissions"),
    ]
    report = validate_content({**MINI_MANIFEST, "permissions": ["log", "callback"]}, {"main.lua": source})
    assert report.valid and not report.warnings


def test_an_unused_callback_permission_is_a_warning():
    report = validate_content({**MINI_MANIFEST, "permissions": ["log", "callback"]},
                              {"main.lua": 'function sync(ctx, input)\n  ctx.log.info("x")\nend\n'})
    assert report.valid and [(w.code, w.path) for w in report.warnings] == [("permission_unused", "permissions.1")]
