"""Lifecycle handlers never run inside a transaction: while an install, upgrade or
uninstall handler waits on its device, the database takes other writes, the version and
instance rows are not locked, and the instance shows where it is (``installing``, …) with
its timers held and its events refused. Failures stay visible: state, last_error, the run."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from marketplace.choices import InstanceState, ResourceKind, RunStatus, Trigger
from marketplace.exceptions import Conflict
from marketplace.models import (
    ContainerEntry,
    HandlerRun,
    Instance,
    IntegrationVersion,
    Organization,
    PendingUpgrade,
    ResourceBinding,
)
from marketplace.services.installs import (
    install_version,
    reconfigure_instance,
    settle_stalled_instances,
    uninstall_instance,
    upgrade_instance,
)
from runtime.events import NotLive, post_event
from runtime.lifecycle import LifecycleFailed, run_lifecycle
from runtime.models import TimerSchedule
from runtime.runs import enqueue_run

from .. import factories
from ..conftest import requires_postgres
from .conftest import _Server
from .helpers import PERMISSIONS, make_runtime_version, timer

# How long the device holds a request when the test never releases it (a failing test).
HOLD_SECONDS = 2.5

LUA = """
function tick(ctx, input) return {} end
function on_event(ctx, input) return {} end
function wait_on_device(ctx, input)
  local r = ctx.device.http("printer", { path = "/hold" })
  ctx.integration.containersSet("beats", "device", { status = r.status })
  return { ok = true }
end
function refused(ctx, input)
  ctx.device.http("printer", { path = "/hold" })
  error("the printer refused the credentials")
end
"""


def lifecycle(on: str, function: str) -> dict:
    return {"type": "lifecycle", "on": on, "file": "main.lua", "function": function, "limits": {"timeoutMs": 4000}}


HANDLERS = {
    "tick": timer("1m"),
    "order": {"type": "event", "event": "order", "file": "main.lua", "function": "on_event"},
}


class HoldingDevice:
    """A device whose ``/hold`` answers only once the test releases it (or HOLD_SECONDS pass)."""

    def __init__(self):
        self.entered, self.release = threading.Event(), threading.Event()

        def hold(record):
            self.entered.set()
            self.release.wait(HOLD_SECONDS)
            return 200, {"Content-Type": "application/json"}, b"{}"

        self.server = _Server({"/hold": hold})


@pytest.fixture
def device():
    holding = HoldingDevice()
    yield holding
    holding.release.set()
    holding.server.close()


def version_with(handlers: dict, integration=None) -> IntegrationVersion:
    return make_runtime_version(
        {**HANDLERS, **handlers}, {"main.lua": LUA}, integration=integration,
        resources={"printer": {"kind": "http"}}, permissions=[*PERMISSIONS, "device.http"],
    )


def printer(organization: Organization, device: HoldingDevice, name: str = "Printer"):
    return factories.make_device(organization, ResourceKind.HTTP, name=name, base_url=device.server.url)


@contextmanager
def held(device: HoldingDevice, operation):
    """Run ``operation`` in a thread of its own (its own database connection) and yield
    once its handler is waiting on the device; on leaving, release the device and hand
    back what ``operation`` returned or raised (``outcome["value"]``)."""
    outcome: dict = {}

    def work():
        try:
            outcome["value"] = operation()
        except Exception as exc:  # handed to the test
            outcome["value"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        assert device.entered.wait(10), outcome.get("value", "the handler never reached the device")
        yield outcome
    finally:
        device.release.set()
        thread.join(20)
        assert not thread.is_alive(), "the operation hung"


def installing(device, organization, version, name="Printer"):
    bound = printer(organization, device, f"Printer of {name} {next(factories._seq)}")
    return lambda: install_version(
        version=version, organization=organization, name=name, config={}, bindings={"printer": bound}
    )


# --- No lock held while the handler runs ---------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_other_writes_go_through_while_an_install_handler_waits_on_its_device(device):
    """On SQLite an open install transaction held the database's write lock for as long as
    the handler ran (other processes waited, then gave up after 20 s); on PostgreSQL it held
    the version row. Now both are free: a write elsewhere and a lock on the version succeed."""
    organization = factories.make_org()
    version = version_with({"install": lifecycle("install", "wait_on_device")})

    with held(device, installing(device, organization, version)) as outcome:
        factories.make_org("Written meanwhile")
        with transaction.atomic():
            # NOWAIT: a row still locked by the install fails at once instead of waiting.
            IntegrationVersion.objects.select_for_update(nowait=True).get(pk=version.pk)
            IntegrationVersion.objects.filter(pk=version.pk).update(available=False)
        shown = Instance.objects.get(organization=organization)
        assert (shown.state, shown.runs_handlers) == (InstanceState.INSTALLING, False)

    instance = outcome["value"]
    assert isinstance(instance, Instance), instance
    assert instance.state == InstanceState.ACTIVE and instance.last_error == ""
    assert Organization.objects.filter(name="Written meanwhile").exists()
    assert ContainerEntry.objects.get(instance=instance, key="device").value == {"status": 200}
    assert TimerSchedule.objects.get(instance=instance).enabled


@requires_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_on_postgres_neither_version_nor_instance_row_is_locked_while_install_or_upgrade_handlers_run(device):
    organization = factories.make_org()
    v1 = version_with({"install": lifecycle("install", "wait_on_device")})
    with held(device, installing(device, organization, v1)) as outcome:
        instance = Instance.objects.get(organization=organization)
        with transaction.atomic():
            IntegrationVersion.objects.select_for_update(nowait=True).get(pk=v1.pk)
            Instance.objects.select_for_update(nowait=True).get(pk=instance.pk)
    assert outcome["value"].state == InstanceState.ACTIVE

    device.entered.clear()
    device.release.clear()
    v2 = version_with({"up": lifecycle("upgrade", "wait_on_device")}, integration=v1.integration)
    with held(device, lambda: upgrade_instance(instance=instance, version=v2)) as outcome:
        with transaction.atomic():
            IntegrationVersion.objects.select_for_update(nowait=True).get(pk=v2.pk)
            IntegrationVersion.objects.select_for_update(nowait=True).get(pk=v1.pk)
            Instance.objects.select_for_update(nowait=True).get(pk=instance.pk)
    assert outcome["value"].state == InstanceState.ACTIVE


def test_lifecycle_handlers_refuse_to_run_inside_a_transaction(acme):
    version = make_runtime_version({"ping": {"type": "lifecycle", "on": "ping", "file": "main.lua",
                                             "function": "tick"}})
    instance = install_version(version=version, organization=acme, name="x", config={}, bindings={})
    with transaction.atomic(), pytest.raises(RuntimeError, match="must not run inside a transaction"):
        run_lifecycle(instance=instance, moment="ping")
    assert not HandlerRun.objects.filter(handler="ping").exists()


# --- What an installing instance shows and refuses --------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_an_installing_instance_holds_its_timers_and_refuses_events_and_changes(device):
    organization = factories.make_org()
    version = version_with({"install": lifecycle("install", "wait_on_device")})

    with held(device, installing(device, organization, version)) as outcome:
        instance = Instance.objects.select_related("version").get(organization=organization)
        # Timers exist (their schedules were checked) but do not fire before activation.
        assert not TimerSchedule.objects.filter(instance=instance, enabled=True).exists()
        with pytest.raises(NotLive):
            post_event(instance=instance, event="order", payload={"id": 1})
        response = Client().post(reverse("runtime:webhook", args=[instance.webhook_token, "order"]),
                                 data=b"{}", content_type="application/json")
        assert response.status_code == 409 and response.json()["error"]["code"] == "not_live"
        assert response["Retry-After"]
        with pytest.raises(Conflict):
            enqueue_run(instance=instance, handler="tick", trigger=Trigger.MANUAL)
        with pytest.raises(Conflict, match="installing"):
            reconfigure_instance(instance=instance, name="Renamed")
        with pytest.raises(Conflict, match="installing"):
            uninstall_instance(instance=instance)
        # A second install under the same name is refused, not queued behind the first.
        with pytest.raises(Exception, match="already has an instance named"):
            installing(device, organization, version)()

    assert outcome["value"].state == InstanceState.ACTIVE
    assert not HandlerRun.objects.exclude(trigger=Trigger.LIFECYCLE).exists()
    assert post_event(instance=outcome["value"], event="order", payload={"id": 2})


# --- Failures stay visible ------------------------------------------------------------------------

def test_a_failed_install_keeps_the_instance_failed_with_its_run_and_frees_its_devices(acme, device):
    version = version_with({"install": lifecycle("install", "refused")})
    device.release.set()
    bound = printer(acme, device)
    with pytest.raises(LifecycleFailed) as exc:
        install_version(version=version, organization=acme, name="Printer", config={}, bindings={"printer": bound})

    instance = Instance.objects.get(pk=exc.value.instance.pk)
    assert instance.state == InstanceState.FAILED
    assert "the printer refused the credentials" in instance.last_error
    assert not ResourceBinding.objects.filter(instance=instance).exists()
    assert not TimerSchedule.objects.filter(instance=instance).exists()
    [run] = HandlerRun.objects.filter(instance=instance)
    assert (run.handler, run.status, run.error_code) == ("install", RunStatus.FAILED, "lua_error")
    assert "the printer refused the credentials" in run.error_message
    with pytest.raises(NotLive):
        post_event(instance=instance, event="order")
    with pytest.raises(Conflict, match="install failed"):
        reconfigure_instance(instance=instance, name="Other")
    bound.delete()  # no binding protects the device any more


def test_installing_again_under_the_failed_name_retries_on_the_same_row(acme, device):
    v1 = version_with({"install": lifecycle("install", "refused")})
    device.release.set()
    with pytest.raises(LifecycleFailed) as exc:
        installing(device, acme, v1)()
    failed = exc.value.instance
    v2 = version_with({"install": lifecycle("install", "wait_on_device")}, integration=v1.integration)

    instance = installing(device, acme, v2)()

    assert instance.pk == failed.pk
    assert (instance.state, instance.last_error, instance.version) == (InstanceState.ACTIVE, "", v2)
    statuses = list(HandlerRun.objects.filter(instance=instance).order_by("pk").values_list("status", flat=True))
    assert statuses == [RunStatus.FAILED, RunStatus.SUCCEEDED]  # the failed attempt stays in its history
    assert TimerSchedule.objects.get(instance=instance).enabled


def test_a_failed_install_is_uninstalled_without_running_its_uninstall_handler(acme, device):
    version = version_with({"install": lifecycle("install", "refused"), "bye": lifecycle("uninstall", "refused")})
    device.release.set()
    with pytest.raises(LifecycleFailed) as exc:
        installing(device, acme, version)()
    uninstall_instance(instance=exc.value.instance)
    assert not Instance.objects.exists()


# --- Upgrade and uninstall ----------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_an_upgrade_commits_upgrading_runs_its_handler_unlocked_then_activates(device):
    organization = factories.make_org()
    v1 = version_with({"install": lifecycle("install", "wait_on_device")})
    device.release.set()
    instance = installing(device, organization, v1)()
    device.entered.clear()
    device.release.clear()
    v2 = version_with({"up": lifecycle("upgrade", "wait_on_device"), "tick": timer("1h")}, integration=v1.integration)

    with held(device, lambda: upgrade_instance(instance=instance, version=v2)) as outcome:
        factories.make_org("Written meanwhile")
        shown = Instance.objects.get(pk=instance.pk)
        assert (shown.state, shown.version_id) == (InstanceState.UPGRADING, v2.pk)
        assert PendingUpgrade.objects.get(instance=instance).previous_version_id == v1.pk
        assert not TimerSchedule.objects.filter(instance=instance, enabled=True).exists()
        with pytest.raises(NotLive):
            post_event(instance=shown, event="order")
        with pytest.raises(Conflict, match="upgrading"):
            upgrade_instance(instance=shown, version=v1)

    upgraded = outcome["value"]
    assert isinstance(upgraded, Instance), upgraded
    assert (upgraded.state, upgraded.version_id) == (InstanceState.ACTIVE, v2.pk)
    assert not PendingUpgrade.objects.exists()
    timer_row = TimerSchedule.objects.get(instance=instance)
    assert timer_row.enabled and timer_row.every_seconds == 3600


def test_a_failed_upgrade_puts_back_version_config_and_bindings_and_says_why(acme, device):
    device.release.set()
    v1 = version_with({})
    bound = printer(acme, device)
    instance = install_version(version=v1, organization=acme, name="P", config={}, bindings={"printer": bound})
    v2 = make_runtime_version(
        {**HANDLERS, "up": lifecycle("upgrade", "refused"), "tick": timer("1h")},
        {"main.lua": LUA.replace('"printer"', '"screen"')},
        integration=v1.integration, resources={"screen": {"kind": "http"}}, permissions=[*PERMISSIONS, "device.http"],
    )
    screen = factories.make_device(acme, ResourceKind.HTTP, name="Screen", base_url=device.server.url)

    with pytest.raises(LifecycleFailed) as exc:
        upgrade_instance(instance=instance, version=v2, bindings={"screen": screen})

    instance.refresh_from_db()
    assert exc.value.instance.pk == instance.pk
    assert (instance.state, instance.version_id) == (InstanceState.ACTIVE, v1.pk)
    assert instance.last_error.startswith("the upgrade to version 2 failed:")
    assert "the printer refused the credentials" in instance.last_error
    assert {b.alias: b.device for b in instance.bindings.all()} == {"printer": bound}
    assert TimerSchedule.objects.get(instance=instance).every_seconds == 60
    assert TimerSchedule.objects.get(instance=instance).enabled
    assert not PendingUpgrade.objects.exists()
    assert HandlerRun.objects.get(instance=instance, handler="up").status == RunStatus.FAILED


@pytest.mark.django_db(transaction=True)
def test_uninstall_handler_runs_unlocked_with_the_instance_marked_uninstalling(device):
    organization = factories.make_org()
    device.release.set()
    version = version_with({"bye": lifecycle("uninstall", "wait_on_device")})
    instance = installing(device, organization, version)()
    device.release.clear()

    with held(device, lambda: uninstall_instance(instance=instance)) as outcome:
        factories.make_org("Written meanwhile")
        with transaction.atomic():
            Instance.objects.select_for_update(nowait=True).get(pk=instance.pk)
        shown = Instance.objects.get(pk=instance.pk)
        assert shown.state == InstanceState.UNINSTALLING
        assert not TimerSchedule.objects.filter(instance=instance, enabled=True).exists()
        with pytest.raises(NotLive):
            post_event(instance=shown, event="order")

    assert outcome["value"] is None
    assert not Instance.objects.filter(pk=instance.pk).exists()


# --- A process that died between the steps -----------------------------------------------------

def test_housekeeping_settles_moments_whose_process_died(acme, device, settings):
    device.release.set()
    v1 = version_with({"install": lifecycle("install", "wait_on_device")})
    v2 = version_with({}, integration=v1.integration)
    stuck_install, stuck_upgrade, stuck_uninstall, recent = (
        installing(device, acme, v1, name=name)() for name in ("a", "b", "c", "d")
    )
    PendingUpgrade.objects.create(instance=stuck_upgrade, previous_version=v1,
                                  previous_bindings={"printer": stuck_upgrade.bindings.get().device_id})
    long_ago = timezone.now() - timedelta(seconds=settings.JUNCTION_LIFECYCLE_STALL_SECONDS + 1)
    Instance.objects.filter(pk=stuck_install.pk).update(state=InstanceState.INSTALLING, state_changed_at=long_ago)
    Instance.objects.filter(pk=stuck_upgrade.pk).update(state=InstanceState.UPGRADING, version=v2,
                                                        state_changed_at=long_ago)
    Instance.objects.filter(pk=stuck_uninstall.pk).update(state=InstanceState.UNINSTALLING, state_changed_at=long_ago)
    Instance.objects.filter(pk=recent.pk).update(state=InstanceState.INSTALLING, state_changed_at=timezone.now())

    assert settle_stalled_instances() == 3

    states = dict(Instance.objects.values_list("name", "state"))
    assert states == {"a": InstanceState.FAILED, "b": InstanceState.ACTIVE, "d": InstanceState.INSTALLING}
    a, b = Instance.objects.get(name="a"), Instance.objects.get(name="b")
    assert "did not finish" in a.last_error and not a.bindings.exists()
    assert b.version_id == v1.pk and b.last_error == (
        "the upgrade to version 2 failed: the process running its handlers stopped before they were done")
    assert not PendingUpgrade.objects.exists()
