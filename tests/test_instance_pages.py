"""My instances and the instance page through Django's test client: the tenant wall (only
the instance's organization's members; the integration's publisher and staff outside it get
a 404), every write through the services, secrets never in the HTML, and the query counts
pinned whatever the number of runs."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from marketplace.choices import Role, RunStatus, Trigger
from marketplace.models import HandlerRun, Instance
from runtime.models import TimerSchedule

from . import factories
from .runtime.helpers import manifest

pytestmark = pytest.mark.django_db

SECRET = "s3cret-never-shown-7731"
LUA = """
function tick(ctx, input)
  ctx.log.info("ticked")
  ctx.integration.containersSet("beats", "last", { beat = 1 })
  return { ok = true }
end
function echo(ctx, input) return { doubled = (input.n or 0) * 2 } end
function boom(ctx, input) error("the printer is on fire") end
"""
CONFIG_SCHEMA = {
    "type": "object",
    "properties": {"site": {"type": "string"}, "apiKey": {"type": "string", "format": "password"}},
    "required": ["site", "apiKey"],
}
HANDLERS = {
    "tick": {"type": "timer", "file": "main.lua", "function": "tick", "schedule": {"every": "5m"}},
    "echo": {"type": "rpc", "file": "main.lua", "function": "echo", "description": "Doubles n"},
    "boom": {"type": "rpc", "file": "main.lua", "function": "boom"},
    "onOrder": {"type": "event", "event": "order.created", "file": "main.lua", "function": "tick"},
}


def publish(integration, notes: str = "First release"):
    return factories.make_published(
        integration, manifest=manifest(HANDLERS, configSchema=CONFIG_SCHEMA), files={"main.lua": LUA}, notes=notes,
    )


@pytest.fixture
def integration(acme):
    return factories.make_integration(acme, name="Printer sync")


@pytest.fixture
def customer(globex):
    user = factories.make_user("gina")
    factories.add_member(user, globex, Role.MEMBER)
    return user


@pytest.fixture
def instance(integration, globex, customer):
    from marketplace.services.installs import install_version

    return install_version(version=publish(integration), organization=globex, name="Plant 1",
                           config={"site": "Plant 1", "apiKey": SECRET}, user=customer)


def detail(instance) -> str:
    return f"/instances/{instance.pk}/"


# --- Walls -----------------------------------------------------------------------------------

def test_the_list_shows_the_users_organizations_instances_only(client, customer, instance, acme, integration):
    from marketplace.services.installs import install_version

    install_version(version=integration.versions.get(), organization=acme, name="Acme's own", config={
        "site": "x", "apiKey": "y"})
    client.force_login(customer)
    html = client.get("/instances/").content.decode()
    assert "Plant 1" in html and "Printer sync" in html
    assert "Acme&#x27;s own" not in html and "Acme's own" not in html
    assert SECRET not in html


@pytest.mark.parametrize("who", ["publisher", "outsider_member", "staff"])
def test_anyone_outside_the_organization_gets_a_404(client, instance, publisher, acme, who):
    user = {
        "publisher": publisher,  # publishes the integration: uses the console, not these pages
        "outsider_member": factories.add_member(factories.make_user("nick"), acme, Role.MEMBER).user,
        "staff": factories.make_user("root", superuser=True, staff=True),
    }[who]
    client.force_login(user)
    assert client.get(detail(instance)).status_code == 404
    assert client.get(f"/instances/{instance.pk}/upgrade/").status_code == 404
    assert client.post(f"/instances/{instance.pk}/enabled/", {"enabled": "0"}).status_code == 404
    assert client.post(f"/instances/{instance.pk}/uninstall/").status_code == 404
    assert client.post(f"/instances/{instance.pk}/rpc/echo/", {"input": "{}"}).status_code == 404
    assert "Plant 1" not in client.get("/instances/").content.decode()
    instance.refresh_from_db()
    assert instance.enabled


def test_anonymous_users_are_sent_to_log_in(client, instance):
    response = client.get(detail(instance))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- The page --------------------------------------------------------------------------------

def test_the_page_shows_config_masked_bindings_timers_webhooks_and_data(client, customer, instance):
    factories.make_container_entry(instance, container="beats", key="last", value={"beat": 7})
    client.force_login(customer)
    response = client.get(detail(instance))
    html = response.content.decode()
    assert response.status_code == 200
    assert SECRET not in html
    assert '&quot;apiKey&quot;: &quot;********&quot;' in html and '&quot;site&quot;: &quot;Plant 1&quot;' in html
    assert 'data-timer="tick"' in html and "every 5m" in html
    assert f"http://testserver/hooks/{instance.webhook_token}/order.created" in html
    assert "Call echo" in html and "Doubles n" in html
    assert "{&quot;beat&quot;: 7}" in html
    assert f"/instances/{instance.pk}/configure/" in html


def test_runs_are_listed_filtered_and_paginated(client, customer, instance):
    for n in range(25):
        factories.make_run(instance, handler="tick", status=RunStatus.SUCCEEDED, duration_ms=10 + n,
                           logs=[{"level": "info", "message": f"line {n}", "fields": {}}])
    failed = factories.make_run(instance, handler="echo", status=RunStatus.FAILED, error_code="lua_error",
                                error_message="the printer is on fire")
    client.force_login(customer)
    html = client.get(detail(instance)).content.decode()
    assert f'data-run="{failed.pk}"' in html and "Page 1" in html and "Older runs" in html
    html = client.get(detail(instance), {"status": "failed"}).content.decode()
    assert f'data-run="{failed.pk}"' in html and html.count("data-run=") == 1 and "the printer is on fire" in html
    html = client.get(detail(instance), {"handler": "tick", "page": 2}).content.decode()
    assert html.count("data-run=") == 5 and "line 0" in html and "Newer runs" in html and "Older runs" not in html
    assert client.get(detail(instance), {"page": "99"}).content.decode().count("data-run=") == 0
    assert client.get(detail(instance), {"page": "x"}).content.decode().count("data-run=") == 20


@pytest.mark.parametrize("runs", [3, 30])
def test_the_page_takes_the_same_queries_whatever_the_runs(client, customer, instance, runs,
                                                          django_assert_num_queries):
    for n in range(runs):
        factories.make_run(instance, handler="tick", status=RunStatus.SUCCEEDED, duration_ms=n)
    factories.make_container_entry(instance, container="beats", key="last")
    client.force_login(customer)
    # session, user, the instance (with its status), the navigation's organizations, bindings,
    # timers, one page of runs, the chart's hours, the stored data.
    with django_assert_num_queries(9):
        assert client.get(detail(instance)).status_code == 200


@pytest.mark.parametrize("instances", [1, 6])
def test_the_list_takes_the_same_queries_whatever_the_instances(client, customer, integration, globex, instances,
                                                               django_assert_num_queries):
    from marketplace.services.installs import install_version

    version = publish(integration)
    for n in range(instances):
        made = install_version(version=version, organization=globex, name=f"Plant {n}",
                               config={"site": "x", "apiKey": SECRET})
        factories.make_run(made, handler="tick", status=RunStatus.FAILED)
    client.force_login(customer)
    with django_assert_num_queries(4):  # session, user, nav organizations, the instances
        html = client.get("/instances/").content.decode()
    assert html.count("data-instance=") == instances and SECRET not in html


# --- Writes, each through its service ---------------------------------------------------------

def test_disable_and_enable_hold_and_release_the_timers(client, customer, instance):
    client.force_login(customer)
    client.post(f"/instances/{instance.pk}/enabled/", {"enabled": "0"})
    instance.refresh_from_db()
    assert not instance.enabled and not TimerSchedule.objects.get(instance=instance).enabled
    assert "Disabled" in client.get("/instances/").content.decode()
    client.post(f"/instances/{instance.pk}/enabled/", {"enabled": "1", "next": "/instances/"})
    instance.refresh_from_db()
    assert instance.enabled and TimerSchedule.objects.get(instance=instance).enabled


def test_upgrade_shows_the_notes_and_moves_to_the_chosen_version(client, customer, instance, integration):
    client.force_login(customer)
    assert "Upgrade available" not in client.get("/instances/").content.decode()
    publish(integration, notes="Now with colour printing")
    assert "Upgrade available" in client.get("/instances/").content.decode()
    page = client.get(f"/instances/{instance.pk}/upgrade/").content.decode()
    assert "Now with colour printing" in page and 'value="2"' in page
    response = client.post(f"/instances/{instance.pk}/upgrade/", {"version": "2"})
    assert response.status_code == 302
    instance.refresh_from_db()
    assert instance.version.number == 2 and instance.secret_config == {"apiKey": SECRET}
    assert "Upgrade available" not in client.get("/instances/").content.decode()


def test_upgrade_refuses_a_version_not_offered(client, customer, instance):
    client.force_login(customer)
    client.post(f"/instances/{instance.pk}/upgrade/", {"version": "1"})
    instance.refresh_from_db()
    assert instance.version.number == 1


def test_uninstall_asks_then_removes(client, customer, instance):
    client.force_login(customer)
    assert "Uninstall Plant 1?" in client.get(f"/instances/{instance.pk}/uninstall/").content.decode()
    assert Instance.objects.filter(pk=instance.pk).exists()
    response = client.post(f"/instances/{instance.pk}/uninstall/")
    assert response["Location"] == "/instances/"
    assert not Instance.objects.filter(pk=instance.pk).exists()


def test_timers_pause_resume_and_run_now(client, customer, instance):
    timer = TimerSchedule.objects.get(instance=instance)
    client.force_login(customer)
    client.post(f"/instances/{instance.pk}/timers/{timer.pk}/paused/", {"paused": "1"})
    timer.refresh_from_db()
    assert timer.paused and not timer.enabled
    client.post(f"/instances/{instance.pk}/timers/{timer.pk}/paused/", {"paused": "0"})
    timer.refresh_from_db()
    assert not timer.paused and timer.enabled
    client.post(f"/instances/{instance.pk}/timers/{timer.pk}/run/")
    run = HandlerRun.objects.get(instance=instance)
    assert (run.handler, run.trigger, run.status) == ("tick", Trigger.MANUAL, RunStatus.QUEUED)


def test_a_timer_of_another_instance_is_a_404(client, customer, instance, integration, acme):
    from marketplace.services.installs import install_version

    other = install_version(version=integration.versions.get(), organization=acme, name="Acme's",
                            config={"site": "x", "apiKey": "y"})
    timer = TimerSchedule.objects.get(instance=other)
    client.force_login(customer)
    assert client.post(f"/instances/{instance.pk}/timers/{timer.pk}/paused/", {"paused": "1"}).status_code == 404
    timer.refresh_from_db()
    assert not timer.paused


def test_replay_queues_the_run_again(client, customer, instance):
    run = factories.make_run(instance, handler="tick", status=RunStatus.FAILED, input={"n": 1})
    client.force_login(customer)
    client.post(f"/instances/{instance.pk}/runs/{run.pk}/replay/")
    again = HandlerRun.objects.exclude(pk=run.pk).get()
    assert (again.trigger, again.input, again.first_run_id) == (Trigger.REPLAY, {"n": 1}, run.pk)


def test_an_rpc_call_shows_its_result(client, customer, instance):
    client.force_login(customer)
    response = client.post(f"/instances/{instance.pk}/rpc/echo/", {"input": '{"n": 21}'})
    run = HandlerRun.objects.get(instance=instance, handler="echo")
    assert run.status == RunStatus.SUCCEEDED and run.result == {"doubled": 42}
    assert response["Location"] == f"/instances/{instance.pk}/?rpc={run.pk}#rpc-echo"
    html = client.get(response["Location"]).content.decode()
    assert 'data-testid="rpc-result"' in html and "42" in html and "Succeeded" in html


def test_an_rpc_call_with_bad_json_or_a_disabled_instance_is_refused_with_a_message(client, customer, instance):
    client.force_login(customer)
    response = client.post(f"/instances/{instance.pk}/rpc/echo/", {"input": "{n:"}, follow=True)
    assert "is not JSON" in response.content.decode()
    client.post(f"/instances/{instance.pk}/enabled/", {"enabled": "0"})
    response = client.post(f"/instances/{instance.pk}/rpc/echo/", {"input": "{}"}, follow=True)
    assert "is disabled" in response.content.decode()
    assert not HandlerRun.objects.filter(instance=instance).exists()
    assert client.post(f"/instances/{instance.pk}/rpc/tick/", {"input": "{}"}).status_code == 404


def test_the_chart_counts_the_last_24_hours(client, customer, instance):
    now = timezone.now()
    factories.make_run(instance, status=RunStatus.SUCCEEDED, duration_ms=100)
    factories.make_run(instance, status=RunStatus.FAILED, duration_ms=300)
    old = factories.make_run(instance, status=RunStatus.FAILED)
    HandlerRun.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=2))
    client.force_login(customer)
    html = client.get(detail(instance)).content.decode()
    assert "2 runs in the last 24 hours" in html
    assert 'data-status="succeeded" data-count="1"' in html and 'data-status="failed" data-count="1"' in html
    assert "200 ms" in html  # the hour's mean duration, in the table fallback


def test_no_page_shows_a_secret_config_value_or_a_device_password(client, acme, globex, customer):
    from .test_customer_data_visibility import CONFIG_SECRET, DSN_PASSWORD, customer_instance

    version = factories.make_published(factories.make_integration(acme))
    made = customer_instance(version, globex, "Globex plant")
    factories.make_published(version.integration)  # so the upgrade page lists a version
    client.force_login(customer)
    for path in ("/instances/", detail(made), f"/instances/{made.pk}/upgrade/", f"/instances/{made.pk}/uninstall/"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.content.decode()
        assert CONFIG_SECRET not in html and DSN_PASSWORD not in html, path
