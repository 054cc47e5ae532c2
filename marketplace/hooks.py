"""What the domain asks of the runtime, which builds on it (docs/services.md, "Layers").

The runtime app (``runtime/``) builds on marketplace — its models, services and access
rules — so marketplace never imports runtime, not even inside a function
(``tests/test_import_layers.py``). Where a domain operation needs the runtime (installing
runs an instance's lifecycle handlers and keeps its timers in step; the console pings an
instance) it calls ``runtime_hooks()``, which the runtime app registers when Django starts
(``runtime.apps``).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class RuntimeHooks:
    """The runtime's functions the domain calls, with their signatures."""

    # (instance, moment) → names of the instance's handlers for that lifecycle moment.
    lifecycle_handlers: Callable[[Any, str], list[str]]
    # run_lifecycle(*, instance, moment, input=None, raise_on_failure=True) → the runs;
    # raises exceptions.LifecycleFailed on a failure when told to.
    run_lifecycle: Callable[..., list[Any]]
    # ping_instance(*, instance, user) → the ping runs, failures reported in them.
    ping_instance: Callable[..., list[Any]]
    # (instance) → None: its timers made to match its version and state.
    sync_schedules: Callable[[Any], None]
    # run_now(*, instance, handler, input, trigger) → the finished run (RPC calls), run in
    # the isolated backstop so untrusted code cannot hold the caller's process.
    run_now: Callable[..., Any]
    # post_event(*, instance, event, payload) → the queued runs, as a webhook posts them.
    post_event: Callable[..., list[Any]]
    # probe_device(device, *, timeout) → (answered, reason): "test connection", through the
    # runtime's device clients (the reason may quote the device: callers mask secrets).
    probe_device: Callable[..., tuple[bool, str]]
    # The customers' instance page: update_timer(*, schedule, paused=…, next_run_at=…, user),
    # run_timer_now(*, schedule, user) → the queued run, replay_run(*, run, user) → the new run.
    update_timer: Callable[..., Any]
    run_timer_now: Callable[..., Any]
    replay_run: Callable[..., Any]


_hooks: RuntimeHooks | None = None


def register_runtime(hooks: RuntimeHooks) -> None:
    global _hooks
    _hooks = hooks


def runtime_hooks() -> RuntimeHooks:
    if _hooks is None:
        raise ImproperlyConfigured("the runtime app is not installed: no lifecycle handlers or timers can run")
    return _hooks
