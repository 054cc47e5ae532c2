"""What a publisher sees of its customers' instances and runs (issue 9, section 2): status,
handler, timing and error code; never config, devices, inputs, results, logs or error
texts, which hold the customer's secrets. Acme (``publisher``) publishes the integration;
Globex (``outsider``, a publisher of Globex) installs it and is the customer here."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from marketplace import access
from marketplace.choices import ResourceKind, Role, RunStatus
from marketplace.models import HandlerRun, Instance
from runtime.models import TimerSchedule

from . import factories

CONFIG_SECRET = "cfg-secret-5Jq"  # a format: password config value
SITE = "Globex site Q7"  # a plain config value: the customer's data all the same
DSN_PASSWORD = "dsn-pass-8Wz"
DEVICE_URL = "http://printer.globex.internal:9100/"
HEADER = "Bearer hdr-secret-3Kp"  # a device's auth header, echoed back into an error
INPUT_SECRET = "input-secret-2Lm"
RESULT_SECRET = "result-secret-6Hd"
EVERY_SECRET = (CONFIG_SECRET, SITE, DSN_PASSWORD, DEVICE_URL, HEADER, INPUT_SECRET, RESULT_SECRET, "main.lua")


def url(name: str, *args) -> str:
    return reverse(f"admin:marketplace_{name}", args=args)


def customer_instance(version, organization, name: str) -> Instance:
    bindings = {
        "my-printer": factories.make_device(organization, ResourceKind.HTTP, base_url=DEVICE_URL),
        "erp": factories.make_device(
            organization, ResourceKind.SQL, dsn=f"postgresql://erp:{DSN_PASSWORD}@db.globex.internal/erp"
        ),
    }
    instance = factories.make_instance(
        version, organization, name=name, config={"site": SITE, "apiKey": CONFIG_SECRET}, bindings=bindings
    )
    Instance.objects.filter(pk=instance.pk).update(last_error=f"ping failed: device said {HEADER}")
    return instance


def run_with_secrets(instance) -> HandlerRun:
    """A failed run as the runtime records it when a handler logs ctx.config and a device
    echoes the request's headers into its error."""
    finished = timezone.now()
    return factories.make_run(
        instance, status=RunStatus.FAILED, input={"token": INPUT_SECRET}, result={"echo": RESULT_SECRET},
        logs=[{"level": "info", "message": f"config: site={SITE} apiKey={CONFIG_SECRET}"}],
        error_code="device_error", error_message=f"device answered 401 to Authorization: {HEADER}",
        error_file="main.lua", error_line=7, started_at=finished - timedelta(milliseconds=42), finished_at=finished,
        duration_ms=42,
    )


@pytest.fixture
def integration(acme):
    return factories.make_published(factories.make_integration(acme, name="Acme Printer sync"))


@pytest.fixture
def customer(integration, globex):
    """Globex's instance of Acme's integration and one of its runs, both full of secrets."""
    instance = customer_instance(integration, globex, "Globex plant")
    return {"instance": instance, "run": run_with_secrets(instance)}


def assert_no_secret(response) -> str:
    assert response.status_code == 200
    html = response.content.decode()
    leaked = [secret for secret in EVERY_SECRET if secret in html]
    assert not leaked, f"the page shows {leaked}"
    return html


# --- the rule itself ------------------------------------------------------------------------

def test_who_sees_an_instances_data(customer, publisher, outsider, admin_user, globex):
    instance, run = customer["instance"], customer["run"]
    assert not access.sees_instance_data(publisher, instance)
    assert not access.sees_run_details(publisher, run)
    assert access.sees_instance_data(outsider, instance) and access.sees_run_details(outsider, run)
    assert access.sees_instance_data(admin_user, instance)
    plain_member = factories.make_user("gina")
    factories.add_member(plain_member, globex, Role.MEMBER)
    assert access.sees_run_details(plain_member, run)


def test_runs_with_details_are_those_of_the_users_organizations(customer, integration, acme, publisher, outsider):
    own = factories.make_run(factories.make_instance(integration, acme, name="Acme plant"))
    runs = HandlerRun.objects.all()
    assert set(access.runs_with_details_for(publisher, runs)) == {own}
    assert set(access.runs_with_details_for(outsider, runs)) == {customer["run"]}


# --- the publisher's console --------------------------------------------------------------------

def test_publisher_sees_a_customers_run_as_status_timing_and_error_code_only(client, publisher, customer):
    run = customer["run"]
    client.force_login(publisher)

    listing = assert_no_secret(client.get(url("handlerrun_changelist")))
    assert f"sync #{run.pk}" in listing

    page = client.get(url("handlerrun_change", run.pk))
    html = assert_no_secret(page)
    shown = set(page.context["adminform"].readonly_fields)
    assert shown == set(access.RUN_SUPPORT_FIELDS)
    for visible in ("device_error", "Failed", "42", "Globex plant"):
        assert visible in html
    assert "only its members see them" in html


def test_the_customer_sees_its_own_runs_in_full(client, outsider, customer):
    client.force_login(outsider)
    html = client.get(url("handlerrun_change", customer["run"].pk)).content.decode()
    for secret in (CONFIG_SECRET, HEADER, INPUT_SECRET, RESULT_SECRET, "main.lua"):
        assert secret in html


def test_publisher_sees_its_own_organizations_runs_in_full(client, publisher, integration, acme):
    own = run_with_secrets(customer_instance(integration, acme, "Acme plant"))
    client.force_login(publisher)
    html = client.get(url("handlerrun_change", own.pk)).content.decode()
    assert CONFIG_SECRET in html and HEADER in html and INPUT_SECRET in html


def test_searching_error_messages_finds_only_runs_whose_details_are_shown(client, publisher, outsider, customer):
    client.force_login(publisher)
    found = client.get(url("handlerrun_changelist"), {"q": "hdr-secret"}).context["cl"].result_list
    assert list(found) == []  # a hit would tell the publisher what the customer's error says

    client.force_login(outsider)
    found = client.get(url("handlerrun_changelist"), {"q": "hdr-secret"}).context["cl"].result_list
    assert list(found) == [customer["run"]]


def test_publisher_sees_a_customers_instance_without_config_devices_or_errors(client, publisher, customer):
    instance = customer["instance"]
    client.force_login(publisher)

    assert_no_secret(client.get(url("instance_changelist")))
    page = client.get(url("instance_change", instance.pk))
    html = assert_no_secret(page)
    assert set(page.context["adminform"].readonly_fields) == {*access.INSTANCE_SUPPORT_FIELDS, "bound_kinds"}
    assert page.context["inline_admin_formsets"] == []
    assert "Globex plant" in html and "my-printer" in html  # which aliases are bound, not to what
    for withheld in ("ping failed", "sql device", "http device", instance.webhook_token):
        assert withheld not in html


def test_the_customer_sees_its_own_instance_config_and_devices(client, outsider, customer):
    client.force_login(outsider)
    html = client.get(url("instance_change", customer["instance"].pk)).content.decode()
    assert SITE in html and DEVICE_URL in html and "ping failed" in html
    assert CONFIG_SECRET not in html  # secrets stay write-only, even for their owner


def test_a_publisher_who_is_also_a_member_of_the_customer_sees_its_data(client, publisher, globex, customer):
    factories.add_member(publisher, globex, Role.MEMBER)
    client.force_login(publisher)
    html = client.get(url("handlerrun_change", customer["run"].pk)).content.decode()
    assert HEADER in html and INPUT_SECRET in html


def test_superuser_sees_everything(client, admin_user, customer):
    client.force_login(admin_user)
    html = client.get(url("handlerrun_change", customer["run"].pk)).content.decode()
    assert HEADER in html and INPUT_SECRET in html and RESULT_SECRET in html
    html = client.get(url("instance_change", customer["instance"].pk)).content.decode()
    assert DEVICE_URL in html and SITE in html


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_publisher_cannot_replay_or_ping_a_customers_instance(client, publisher, customer):
    instance, run = customer["instance"], customer["run"]
    client.force_login(publisher)
    before = HandlerRun.objects.count()

    replay = client.post(url("handlerrun_changelist"), {"action": "replay", "_selected_action": [run.pk]}, follow=True)
    ping = client.post(url("instance_changelist"), {"action": "ping", "_selected_action": [instance.pk]}, follow=True)

    assert HandlerRun.objects.count() == before
    refusals = messages_of(replay) + messages_of(ping)
    assert len(refusals) == 2 and all("role in Globex" in text for text in refusals)
    for response in (replay, ping):
        assert_no_secret(response)


def test_publisher_does_not_see_a_customers_timers(client, publisher, outsider, customer):
    timer = TimerSchedule.objects.get(instance=customer["instance"])
    client.force_login(publisher)
    response = client.get(reverse("admin:runtime_timerschedule_changelist"))
    assert timer not in response.context["cl"].result_list
    assert client.get(reverse("admin:runtime_timerschedule_change", args=[timer.pk])).status_code == 404

    client.force_login(outsider)
    response = client.get(reverse("admin:runtime_timerschedule_changelist"))
    assert timer in response.context["cl"].result_list
