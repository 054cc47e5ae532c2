"""Lifecycle handlers: ``install``, ``uninstall``, ``upgrade`` and ``ping`` run
synchronously (``runtime.execution.run_now``) at those moments, called by the install
services. A failing ``install`` or ``upgrade`` handler raises LifecycleFailed, which
rolls the surrounding install/upgrade transaction back; a failing ``uninstall`` is
logged and the instance is removed anyway (a broken integration must stay removable).
"""
from __future__ import annotations

import logging

from marketplace.choices import RunStatus, Trigger
from marketplace.exceptions import DomainError
from marketplace.models import HandlerRun, Instance

log = logging.getLogger(__name__)

MOMENTS = ("install", "uninstall", "upgrade", "ping")


class LifecycleFailed(DomainError):
    """A lifecycle handler failed; the operation that ran it was not done. Carries the
    run's error code and message (and the run, unsaved if the transaction rolled back)."""

    status_code = 409

    def __init__(self, run: HandlerRun, moment: str):
        self.run = run
        self.code = run.error_code or "failed"
        where = f" ({run.error_file}:{run.error_line})" if run.error_file and run.error_line else ""
        super().__init__(
            f"the {moment} handler {run.handler!r} failed: {self.code}: {run.error_message}{where}",
            field="__all__",
        )


def lifecycle_handlers(instance: Instance, moment: str) -> list[str]:
    return sorted(
        name for name, spec in instance.version.handlers.items()
        if isinstance(spec, dict) and spec.get("type") == "lifecycle" and spec.get("on") == moment
    )


def run_lifecycle(*, instance: Instance, moment: str, input: dict | None = None, raise_on_failure: bool = True) -> list[HandlerRun]:
    """Run every ``moment`` handler of ``instance`` now, in name order. With
    ``raise_on_failure`` the first failure raises LifecycleFailed."""
    assert moment in MOMENTS, moment
    runs = []
    for name in lifecycle_handlers(instance, moment):
        from .execution import run_now

        run = run_now(instance=instance, handler=name, input=input or {}, trigger=Trigger.LIFECYCLE)
        runs.append(run)
        if run.status != RunStatus.SUCCEEDED:
            if raise_on_failure:
                raise LifecycleFailed(run, moment)
            log.warning("%s handler %s of instance %s failed: %s", moment, name, instance.pk, run.error_message)
    return runs


def ping_instance(*, instance: Instance, user=None) -> list[HandlerRun]:
    """Run the instance's ``ping`` handlers (a health check); failures are reported in the
    returned runs, not raised."""
    from marketplace import access

    access.require_role(user, instance.organization)
    return run_lifecycle(instance=instance, moment="ping", raise_on_failure=False)
