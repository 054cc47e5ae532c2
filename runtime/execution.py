"""Running one handler: from a ``HandlerRun`` row (or a package on disk) to a recorded result.

``execute_run(run_id)`` is what a worker calls; ``run_now(...)`` creates the row and runs it
in the caller's process (RPC, lifecycle handlers, "run now"). ``run_spec(...)`` is the
database-free core shared with the ``run_handler`` command.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from marketplace.choices import RunStatus
from marketplace.models import HandlerRun, Instance

from .ctx import Ctx
from .dispatch import DeviceSpec, bindings_for
from .limits import Limits, limits_for
from .sandbox import RunResult, SandboxError, run_lua
from .stores import DjangoStore, Store

logger = logging.getLogger(__name__)


def _schema_error(schema: Any, value: Any) -> str | None:
    """The first violation of ``value`` against a Draft 2020-12 schema, as one line."""
    if not isinstance(schema, (dict, bool)):
        return None
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"the schema itself is invalid: {exc.message}"
    error = next(iter(Draft202012Validator(schema).iter_errors(value)), None)
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{where}: {error.message}"[:500]


def _failed(code: str, message: str) -> RunResult:
    return RunResult(status="failed", error=SandboxError(code=code, message=message))


def run_spec(
    *,
    manifest: dict,
    files: Mapping[str, str],
    handler: str,
    input: Any,
    config: dict,
    instance_info: dict,
    store: Store,
    devices: Mapping[str, DeviceSpec],
    limits: Limits | None = None,
) -> RunResult:
    """Run handler ``handler`` of a package (manifest + files) once, in a fresh sandbox.

    RPC handlers have their input and output checked against ``inputSchema`` /
    ``outputSchema`` (Draft 2020-12): a violation fails the run with ``input_invalid``
    (the handler does not run) or ``output_invalid`` (the result is dropped). Never raises
    for anything the handler does.
    """
    handlers = manifest.get("handlers") if isinstance(manifest.get("handlers"), dict) else {}
    spec = handlers.get(handler)
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str) or not isinstance(spec.get("function"), str):
        return _failed("handler_not_found", f"the manifest has no handler {handler!r}")
    is_rpc = spec.get("type") == "rpc"
    if is_rpc and "inputSchema" in spec:
        problem = _schema_error(spec["inputSchema"], input)
        if problem:
            return _failed("input_invalid", f"input does not match inputSchema: {problem}")
    limits = limits or limits_for(spec)
    ctx = Ctx(
        manifest=manifest,
        config=config,
        instance_info=instance_info,
        store=store,
        devices=devices,
        limits=limits,
    )
    outcome = run_lua(
        source=files, file=spec["file"], function=spec["function"], input=input, host=ctx,
        limits=limits,
    )
    if outcome.ok and is_rpc and "outputSchema" in spec:
        problem = _schema_error(spec["outputSchema"], outcome.result)
        if problem:
            outcome.status = "failed"
            outcome.error = SandboxError("output_invalid", f"result does not match outputSchema: {problem}")
            outcome.result = None
    return outcome


def instance_info(instance: Instance) -> dict:
    version = instance.version
    return {
        "id": instance.pk,
        "name": instance.name,
        "integration": version.integration.slug,
        "version": version.number,
    }


def execute_run(run_id: int) -> HandlerRun:
    """Run a queued ``HandlerRun`` and record how it went.

    - A run already finished (succeeded/failed) is returned untouched, so a redelivered task
      does nothing twice. A queued or running (picked up before, worker lost) run is marked
      ``running`` with ``started_at`` and ``starts + 1`` in its own short transaction: no
      database lock is held while the handler runs.
    - The ctx is built from the database: ``instance.runtime_config()``, the instance's
      bindings → devices, the version's manifest (permissions, resources, containers) and
      the handler's limits.
    - Records ``status``, ``result``, ``logs``, ``error_code``/``error_message``/
      ``error_file``/``error_line``, ``finished_at``, ``duration_ms``, and sets the
      instance's ``last_run_at``. Never raises for a handler failure; a platform fault is
      logged and recorded as ``internal_error``.
    """
    with transaction.atomic():
        run = HandlerRun.objects.select_for_update().get(pk=run_id)
        if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return run
        run.status = RunStatus.RUNNING
        run.started_at = timezone.now()
        run.starts += 1
        run.save(update_fields=["status", "started_at", "starts"])

    instance = Instance.objects.select_related("version__integration").get(pk=run.instance_id)
    version = instance.version
    try:
        outcome = run_spec(
            manifest=version.manifest if isinstance(version.manifest, dict) else {},
            files=version.files if isinstance(version.files, dict) else {},
            handler=run.handler,
            input=run.input,
            config=instance.runtime_config(),
            instance_info=instance_info(instance),
            store=DjangoStore(instance),
            devices=bindings_for(instance),
        )
    except Exception:
        logger.exception("run %s of %s failed on the platform's side", run.pk, run.handler)
        outcome = _failed("internal_error", "the run failed on the platform's side")

    finished = timezone.now()
    error = outcome.error
    run.status = RunStatus.SUCCEEDED if outcome.ok else RunStatus.FAILED
    run.result = outcome.result
    run.logs = outcome.logs
    run.error_code = error.code if error else ""
    run.error_message = error.message if error else ""
    run.error_file = (error.file or "")[:255] if error else ""
    run.error_line = error.line if error else None
    run.finished_at = finished
    run.duration_ms = outcome.duration_ms
    run.save(
        update_fields=[
            "status", "result", "logs", "error_code", "error_message", "error_file", "error_line",
            "finished_at", "duration_ms",
        ]
    )
    Instance.objects.filter(pk=instance.pk).update(last_run_at=finished)
    return run


def run_now(*, instance: Instance, handler: str, input: Any, trigger: str) -> HandlerRun:
    """Create a run of ``handler`` for ``instance`` and execute it synchronously.

    Used for RPC calls and lifecycle handlers; returns the finished row (see
    ``execute_run`` for what is recorded). RPC handlers get input/output validation.
    """
    run = HandlerRun.objects.create(
        instance=instance, handler=handler, trigger=trigger, input={} if input is None else input
    )
    return execute_run(run.pk)
