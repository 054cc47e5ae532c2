"""Running an instance's handlers when one of its organization's members asks: a ping, an
RPC call, an event. The REST API calls these; they are the marketplace's only way into the
runtime's run entry points (``runtime.lifecycle.ping_instance``, ``runtime.execution.run_now``,
``runtime.events.post_event``), so when the runtime moves those, this module is the one to follow.

Pings and RPC calls run synchronously for the caller. The runtime runs their sandbox in a
child process killed at the handler's time limit plus JUNCTION_RUNTIME_KILL_MARGIN_MS
(``runtime.isolation``), so untrusted code cannot hold a web worker past that. Events only
queue runs for the workers.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError

from .. import access, jsonvalues
from ..choices import LIVE_STATES, InstanceState, Trigger
from ..exceptions import Conflict, InvalidInput, NotFound
from ..models import HandlerRun, Instance
from ..validators import validate_handler_input

if TYPE_CHECKING:
    from ..querysets import AnyUser


def _runtime() -> tuple[ModuleType, ModuleType, ModuleType]:
    # The runtime app builds on marketplace; imported late so marketplace loads on its own.
    from runtime import events, execution, lifecycle

    return lifecycle, execution, events


def ping(*, instance: Instance, user: AnyUser) -> list[HandlerRun]:
    """Run the instance's ``ping`` handlers now (none: an empty list). Failures are in
    the returned runs, not raised; an instance that is not live is refused (Conflict)."""
    return _runtime()[0].ping_instance(instance=instance, user=user)


def call_rpc(*, instance: Instance, handler: str, input: Any, user: AnyUser) -> HandlerRun:
    """Run RPC handler ``handler`` of ``instance`` now with ``input`` (None: ``{}``) and
    return the finished run (a handler that fails is a failed run, not an error).

    Refused before any run is made: NotFound when the instance's version has no RPC
    handler of that name; Conflict when the instance is disabled or not live (being
    installed, upgraded, uninstalled, or its install failed); InvalidInput keyed by
    ``input.<path>`` when the input is not plain JSON or breaks the handler's inputSchema."""
    access.require_role(user, instance.organization)
    input = {} if input is None else input  # as run_now has it: no input is an empty object
    spec = instance.version.handlers.get(handler)
    if not isinstance(spec, dict) or spec.get("type") != "rpc":
        raise NotFound(f"version {instance.version.number} of {instance.version.integration.slug} has no RPC "
                       f"handler {handler!r}")
    _require_running(instance, "called")
    try:
        jsonvalues.check_value(input)
    except jsonvalues.JSONRefused as exc:
        raise InvalidInput(f"the input is not plain JSON: {exc.message}", field="input") from None
    if "inputSchema" in spec:
        try:
            validate_handler_input(spec["inputSchema"], input)
        except ValidationError as exc:
            raise InvalidInput.from_validation_error(exc) from None
    return _runtime()[1].run_now(instance=instance, handler=handler, input=input, trigger=Trigger.RPC)


def post_event(*, instance: Instance, event: str, payload: Any, user: AnyUser) -> list[HandlerRun]:
    """Queue a run of each of the instance's handlers of ``event``, as its webhook does
    (``runtime.events.post_event``: the same refusals, a disabled instance queues nothing)."""
    access.require_role(user, instance.organization)
    return _runtime()[2].post_event(instance=instance, event=event, payload=payload)


def _require_running(instance: Instance, doing: str) -> None:
    # The stored row, not the caller's copy: a disable or an uninstall that committed since wins.
    enabled, state = Instance.objects.filter(pk=instance.pk).values_list("enabled", "state").first() or (False, "")
    if state not in LIVE_STATES:
        label = InstanceState(state).label.lower() if state else "uninstalled"
        raise Conflict(f"{instance.name} cannot be {doing}: it is {label}", field="instance")
    if not enabled:
        raise Conflict(f"{instance.name} is disabled: enable it to run its handlers", field="instance")
