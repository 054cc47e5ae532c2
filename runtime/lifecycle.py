"""Lifecycle handlers: ``install``, ``uninstall``, ``upgrade`` and ``ping`` run
synchronously (``runtime.worker.run_now``) at those moments, called by the install
services (``marketplace.services.installs``) and the console's ping.

A handler may wait on a device for up to a minute, so it never runs inside a transaction:
``run_lifecycle`` refuses to start while one is open. The services commit the instance's
new state first (``installing``, ``upgrading``, ``uninstalling``), run the handlers, then
finish or undo the moment in a transaction of its own. A failing ``install`` or
``upgrade`` handler raises LifecycleFailed; a failing ``uninstall`` is logged and the
instance is removed anyway (a broken integration must stay removable).
"""
from __future__ import annotations

import logging

from django.db import connection

from marketplace import access
from marketplace.choices import LIVE_STATES, InstanceState, RunStatus, Trigger
from marketplace.exceptions import Conflict, LifecycleFailed
from marketplace.models import HandlerRun, Instance

from .worker import run_now

log = logging.getLogger(__name__)

MOMENTS = ("install", "uninstall", "upgrade", "ping")


def in_transaction() -> bool:
    """Whether the caller holds a transaction open on the default database. The one a test
    case wraps each test in is not the caller's (Django marks it ``_from_testcase``)."""
    return any(not getattr(block, "_from_testcase", False) for block in connection.atomic_blocks)


def lifecycle_handlers(instance: Instance, moment: str) -> list[str]:
    return sorted(
        name for name, spec in instance.version.handlers.items()
        if isinstance(spec, dict) and spec.get("type") == "lifecycle" and spec.get("on") == moment
    )


def run_lifecycle(*, instance: Instance, moment: str, input: dict | None = None, raise_on_failure: bool = True) -> list[HandlerRun]:
    """Run every ``moment`` handler of ``instance`` now, in name order, each run committed
    as it goes. With ``raise_on_failure`` the first failure raises LifecycleFailed.
    Raises RuntimeError when called inside a transaction: a handler waiting on a device
    would hold its locks (on SQLite, the whole database's write lock) all that time."""
    assert moment in MOMENTS, moment
    names = lifecycle_handlers(instance, moment)
    if names and in_transaction():
        raise RuntimeError(f"{moment} handlers must not run inside a transaction: commit first")
    runs = []
    for name in names:
        run = run_now(instance=instance, handler=name, input=input or {}, trigger=Trigger.LIFECYCLE)
        runs.append(run)
        if run.status != RunStatus.SUCCEEDED:
            if raise_on_failure:
                raise LifecycleFailed(run, moment)
            log.warning("%s handler %s of instance %s failed: %s", moment, name, instance.pk, run.error_message)
    return runs


def ping_instance(*, instance: Instance, user=None) -> list[HandlerRun]:
    """Run the instance's ``ping`` handlers (a health check); failures are reported in the
    returned runs, not raised. An instance being installed, upgraded or uninstalled, or
    whose install failed, is not pinged (Conflict)."""
    access.require_role(user, instance.organization)
    state = Instance.objects.filter(pk=instance.pk).values_list("state", flat=True).first()
    if state not in LIVE_STATES:
        label = InstanceState(state).label.lower() if state else "uninstalled"
        raise Conflict(f"{instance.name} cannot be pinged: it is {label}", field="instance")
    return run_lifecycle(instance=instance, moment="ping", raise_on_failure=False)
