"""Lifecycle handlers run by the install services: install (a failure leaves the instance
``failed`` with its error and run), upgrade ({from, to}), uninstall, ping."""
from __future__ import annotations

import pytest

from marketplace.choices import InstanceState, RunStatus, Trigger
from marketplace.models import ContainerEntry, HandlerRun, Instance
from marketplace.services.installs import uninstall_instance, upgrade_instance
from runtime.lifecycle import LifecycleFailed, ping_instance
from runtime.models import TimerSchedule

from .helpers import install, make_runtime_version, timer

pytestmark = pytest.mark.django_db

LUA = """
function tick(ctx, input) return {} end
function on_install(ctx, input)
  ctx.integration.containersSet("beats", "installed", { yes = true })
  return { ok = true }
end
function on_upgrade(ctx, input)
  ctx.integration.containersSet("beats", "upgraded", { from = input.from, to = input.to })
  return { ok = true }
end
function broken(ctx, input) error("the device refused the credentials") end
function pong(ctx, input) return { pong = true } end
"""


def lifecycle(on: str, function: str) -> dict:
    return {"type": "lifecycle", "on": on, "file": "main.lua", "function": function}


def test_install_handler_runs_when_installing():
    instance = install({"install": lifecycle("install", "on_install"), "tick": timer()}, {"main.lua": LUA})
    assert ContainerEntry.objects.get(instance=instance, key="installed").value == {"yes": True}
    run = HandlerRun.objects.get(instance=instance, handler="install")
    assert (run.trigger, run.status) == (Trigger.LIFECYCLE, RunStatus.SUCCEEDED)


def test_a_failing_install_handler_leaves_a_failed_instance_with_its_run_and_error():
    with pytest.raises(LifecycleFailed) as exc:
        install({"install": lifecycle("install", "broken"), "tick": timer()}, {"main.lua": LUA})
    assert "the device refused the credentials" in exc.value.message
    assert exc.value.code == "lua_error"
    assert exc.value.status_code == 409
    instance = Instance.objects.get()
    assert exc.value.instance == instance
    assert instance.state == InstanceState.FAILED
    assert "the device refused the credentials" in instance.last_error
    assert not TimerSchedule.objects.exists()
    run = HandlerRun.objects.get()
    assert (run.instance, run.handler, run.status, run.error_code) == (instance, "install", RunStatus.FAILED, "lua_error")


def test_upgrade_handler_gets_from_and_to():
    v1 = make_runtime_version({"tick": timer()}, {"main.lua": LUA})
    instance = install(version=v1)
    v2 = make_runtime_version({"up": lifecycle("upgrade", "on_upgrade"), "tick": timer()}, {"main.lua": LUA},
                              integration=v1.integration)
    upgrade_instance(instance=instance, version=v2)
    assert ContainerEntry.objects.get(instance=instance, key="upgraded").value == {"from": 1, "to": 2}


def test_a_failing_upgrade_handler_keeps_the_old_version():
    v1 = make_runtime_version({"tick": timer("1m")}, {"main.lua": LUA})
    instance = install(version=v1)
    v2 = make_runtime_version({"up": lifecycle("upgrade", "broken"), "tick": timer("1h")}, {"main.lua": LUA},
                              integration=v1.integration)
    with pytest.raises(LifecycleFailed):
        upgrade_instance(instance=instance, version=v2)
    instance.refresh_from_db()
    assert instance.version_id == v1.pk
    assert instance.timer_schedules.get().every_seconds == 60


def test_uninstall_handler_runs_and_its_failure_does_not_block_the_uninstall():
    instance = install({"bye": lifecycle("uninstall", "broken"), "tick": timer()}, {"main.lua": LUA})
    uninstall_instance(instance=instance)
    assert not Instance.objects.filter(pk=instance.pk).exists()


@pytest.mark.parametrize("function, status", [("pong", RunStatus.SUCCEEDED), ("broken", RunStatus.FAILED)])
def test_ping_reports_without_raising(member, acme, function, status):
    instance = install({"ping": lifecycle("ping", function)}, {"main.lua": LUA}, organization=acme)
    [run] = ping_instance(instance=instance, user=member)
    assert (run.handler, run.trigger, run.status) == ("ping", Trigger.LIFECYCLE, status)
