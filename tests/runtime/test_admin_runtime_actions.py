"""Console actions that run handlers: ping an instance, replay a finished run."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from marketplace.choices import RunStatus, Trigger
from marketplace.models import HandlerRun
from runtime.worker import run_now

from .helpers import install

pytestmark = pytest.mark.django_db

PING_LUA = """
function tick(ctx, input) return { ok = true } end
function ping(ctx, input)
  if ctx.config.broken then error("device unreachable") end
  return { ok = true }
end
"""
HANDLERS = {
    "tick": {"type": "rpc", "file": "main.lua", "function": "tick"},
    "ping": {"type": "lifecycle", "on": "ping", "file": "main.lua", "function": "ping"},
}


def console(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_ping_runs_the_ping_handler_and_says_how_it_went(publisher, acme):
    instance = install(HANDLERS, {"main.lua": PING_LUA}, organization=acme, name="pinged")

    response = console(publisher).post(
        reverse("admin:marketplace_instance_changelist"),
        {"action": "ping", "_selected_action": [instance.pk]}, follow=True,
    )

    run = HandlerRun.objects.get(instance=instance, handler="ping")
    assert (run.trigger, run.status) == (Trigger.LIFECYCLE, RunStatus.SUCCEEDED)
    assert f"Ping of pinged succeeded (run #{run.pk})" in response.content.decode()


def test_a_failing_ping_is_reported_with_its_error(publisher, acme):
    instance = install(HANDLERS, {"main.lua": PING_LUA}, organization=acme, name="broken")
    instance.config = {"broken": True}
    instance.save()

    response = console(publisher).post(
        reverse("admin:marketplace_instance_changelist"),
        {"action": "ping", "_selected_action": [instance.pk]}, follow=True,
    )

    run = HandlerRun.objects.get(instance=instance, handler="ping")
    assert run.status == RunStatus.FAILED
    assert f"Ping of broken failed (run #{run.pk})" in response.content.decode()
    assert "device unreachable" in response.content.decode()


def test_ping_of_an_instance_without_a_ping_handler_says_so(publisher, acme):
    instance = install(organization=acme, name="silent")
    response = console(publisher).post(
        reverse("admin:marketplace_instance_changelist"),
        {"action": "ping", "_selected_action": [instance.pk]}, follow=True,
    )
    assert "Ping of silent: its version has no ping handler." in response.content.decode()


def test_replay_queues_a_new_attempt_with_the_original_input(publisher, acme):
    instance = install(HANDLERS, {"main.lua": PING_LUA}, organization=acme)
    first = run_now(instance=instance, handler="tick", input={"n": 7}, trigger=Trigger.RPC)

    response = console(publisher).post(
        reverse("admin:marketplace_handlerrun_changelist"),
        {"action": "replay", "_selected_action": [first.pk]}, follow=True,
    )

    replay = HandlerRun.objects.exclude(pk=first.pk).get()
    assert (replay.trigger, replay.input, replay.first_run_id, replay.attempt) == (Trigger.REPLAY, {"n": 7}, first.pk, 2)
    assert f"Queued replays #{replay.pk}." in response.content.decode()


def test_the_instance_page_shows_its_webhook_urls_to_its_own_organization_only(publisher, outsider, acme):
    handlers = {"onAlert": {"type": "event", "event": "device.alert", "file": "main.lua", "function": "tick"}}
    instance = install(handlers, {"main.lua": PING_LUA}, organization=acme)
    url = reverse("admin:marketplace_instance_change", args=[instance.pk])
    hook = reverse("runtime:webhook", args=[instance.webhook_token, "device.alert"])

    assert hook in console(publisher).get(url).content.decode()
    assert console(outsider).get(url).status_code == 404


def test_uninstalling_from_the_console_runs_the_uninstall_handler_outside_the_admins_transaction(publisher, acme):
    """Django's delete page wraps the delete in a transaction; the uninstall handler would
    run inside it (``run_lifecycle`` refuses to). The console leaves that wrapper out."""
    handlers = {**HANDLERS, "bye": {"type": "lifecycle", "on": "uninstall", "file": "main.lua", "function": "ping"}}
    instance = install(handlers, {"main.lua": PING_LUA}, organization=acme, name="leaving")

    response = console(publisher).post(
        reverse("admin:marketplace_instance_delete", args=[instance.pk]), {"post": "yes"}, follow=True,
    )

    assert response.status_code == 200
    assert not type(instance).objects.filter(pk=instance.pk).exists()


def test_an_instance_whose_install_failed_is_not_pinged(publisher, acme):
    from marketplace.choices import InstanceState

    instance = install(HANDLERS, {"main.lua": PING_LUA}, organization=acme, name="failed")
    type(instance).objects.filter(pk=instance.pk).update(state=InstanceState.FAILED, last_error="device unreachable")

    response = console(publisher).post(
        reverse("admin:marketplace_instance_changelist"),
        {"action": "ping", "_selected_action": [instance.pk]}, follow=True,
    )

    assert not HandlerRun.objects.filter(instance=instance, handler="ping").exists()
    assert "Ping of failed: failed cannot be pinged: it is install failed" in response.content.decode()
