"""Running one handler: from a claimed ``HandlerRun`` (or a package on disk) to a recorded
result — the execute and record steps of the pipeline (docs/running.md).

``execute(run)`` runs a run the worker has claimed (``runtime.worker``) and records its
outcome; ``run_spec(...)`` is the database-free core it shares with the ``run_handler``
command. How a run is claimed, and what follows it, is ``runtime.worker``'s.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from django.utils import timezone

from marketplace import schemas
from marketplace.choices import RunStatus, VersionState
from marketplace.models import HandlerRun, Instance, IntegrationVersion

from . import postgres, watchdog
from .callbacks import InstanceMinter
from .ctx import Ctx
from .devices import DeviceSpec, bindings_for
from .isolation import run_isolated
from .limits import Limits, limits_for
from .outcomes import RunResult, SandboxError
from .sandbox import run_lua
from .stores import DjangoStore, Store

logger = logging.getLogger(__name__)


def _schema_error(schema: Any, value: Any) -> str | None:
    """The first violation of ``value`` against a Draft 2020-12 schema, as one line."""
    if not isinstance(schema, (dict, bool)):
        return None
    try:
        schemas.check_schema(schema)
    except schemas.SchemaError as exc:
        return f"the schema itself is invalid: {exc.message}"
    error = next(iter(schemas.validator(schema).iter_errors(value)), None)
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
    isolated: bool = False,
    on_ctx: Callable[[Ctx], None] | None = None,
    callbacks: Any = None,
) -> RunResult:
    """Run handler ``handler`` of a package (manifest + files) once, in a fresh sandbox:
    in this process, or with ``isolated`` in a child process killed at the run's limit
    plus a margin (``isolation.run_isolated``; ctx calls still run here).

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
        callbacks=callbacks,
    )
    if on_ctx is not None:
        on_ctx(ctx)
    outcome = (run_isolated if isolated else run_lua)(
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


# ``Instance.last_run_at`` is shared by every run of an instance: writing it on each run
# makes concurrent workers queue on that one row. It is kept to this granularity instead
# (written when it is empty or older than this; it never moves backwards).
LAST_RUN_AT_GRANULARITY = timedelta(seconds=5)

# Published versions never change (IntegrationVersion.checksum covers manifest and files), so
# each worker process keeps the content of the versions it ran, keyed by (id, checksum), in a
# small LRU: a run then loads neither the manifest nor the bundle. Drafts are never cached.
PROGRAM_CACHE_SIZE = 64
_programs: OrderedDict[tuple[int, str], tuple[Any, Any]] = OrderedDict()
_programs_lock = threading.Lock()


def clear_program_cache() -> None:
    with _programs_lock:
        _programs.clear()


def _program(version: IntegrationVersion) -> tuple[dict, dict]:
    """(manifest, files) of ``version``, loaded with its row deferred: from the per-process
    cache when a published version with this id and checksum was loaded before. The
    returned dicts are shared between runs: read them, never change them."""
    key = (version.pk, version.checksum)
    cacheable = version.state == VersionState.PUBLISHED and bool(version.checksum)
    if cacheable:
        with _programs_lock:
            hit = _programs.get(key)
            if hit is not None:
                _programs.move_to_end(key)
                return hit
    manifest, files, checksum, state = (
        IntegrationVersion.objects.filter(pk=version.pk).values_list("manifest", "files", "checksum", "state").get()
    )
    program = (manifest if isinstance(manifest, dict) else {}, files if isinstance(files, dict) else {})
    # Cached under the checksum read with the content itself, never another one.
    if cacheable and state == VersionState.PUBLISHED and checksum == version.checksum:
        with _programs_lock:
            _programs[key] = program
            _programs.move_to_end(key)
            while len(_programs) > PROGRAM_CACHE_SIZE:
                _programs.popitem(last=False)
    return program


def execute(run: HandlerRun, *, isolated: bool = False) -> HandlerRun:
    """Run a claimed ``HandlerRun`` (``running``, loaded with its instance, version and
    integration as ``postgres.load_run`` loads it) and record how it went. No database
    lock is held while the handler runs.

    - The ctx is built from the database: ``instance.runtime_config()``, the instance's
      bindings → devices (only queried when the manifest declares resources), the
      version's manifest (permissions, resources, containers) and the handler's limits.
      The manifest and bundle come from a per-process cache of published versions
      (``_program``).
    - Records ``status``, ``result``, ``logs``, ``error_code``/``error_message``/
      ``error_file``/``error_line``, ``finished_at``, ``duration_ms`` in one UPDATE, and the
      instance's ``last_run_at`` to ``LAST_RUN_AT_GRANULARITY`` (5 s)
      (``postgres.record_outcome``). Never raises for a handler failure; a platform fault
      is logged and recorded as ``internal_error``.
    - ``isolated``: the sandbox runs in a child process with a kill (``run_spec``).
    """
    instance = run.instance
    version = instance.version
    manifest, files = _program(version)
    # Filled in, so that follow-ups (handler_spec) read them without another query.
    version.manifest, version.files = manifest, files
    resources = manifest.get("resources")
    spec = version.handlers.get(run.handler)
    limits = limits_for(spec if isinstance(spec, dict) else None)
    # In a worker's task, a run stuck past its limit plus a margin is recorded and its
    # process killed by the watchdog (never for an isolated run: its child has its own kill).
    watch = (contextlib.nullcontext() if isolated
             else watchdog.watching(run_id=run.pk, starts=run.starts, timeout_ms=limits.timeout_ms))
    with watch as watched:
        try:
            outcome = run_spec(
                manifest=manifest,
                files=files,
                handler=run.handler,
                input=run.input,
                config=instance.runtime_config(),
                instance_info=instance_info(instance),
                store=DjangoStore(instance),
                # Without declared resources ctx refuses every alias before looking at devices.
                devices=bindings_for(instance) if isinstance(resources, dict) and resources else {},
                limits=limits,
                isolated=isolated,
                on_ctx=watched.attach_logs if watched is not None else None,
                callbacks=InstanceMinter(instance.pk),
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
    stale = finished - LAST_RUN_AT_GRANULARITY
    touch = instance.last_run_at is None or instance.last_run_at < stale
    if postgres.record_outcome(run, touch_instance=touch, stale=stale):
        instance.last_run_at = finished
    return run
