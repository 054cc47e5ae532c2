"""Running one handler: from a ``HandlerRun`` row (or a package on disk) to a recorded result.

``execute_run(run_id)`` is what a worker calls; ``run_now(...)`` creates the row and runs it
for the caller (RPC, lifecycle handlers, the console's ping), the sandbox in a child process
killed at the run's limit plus a margin (``runtime.isolation``). ``run_spec(...)`` is the
database-free core shared with the ``run_handler`` command.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import timedelta
from functools import cache
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import F, Q
from django.utils import timezone

from marketplace import schemas
from marketplace.choices import RunStatus, VersionState
from marketplace.models import HandlerRun, Instance, Integration, IntegrationVersion

from . import watchdog
from .callbacks import InstanceMinter
from .ctx import Ctx
from .devices import DeviceSpec, bindings_for
from .isolation import run_isolated
from .limits import Limits, limits_for
from .sandbox import RunResult, SandboxError, run_lua
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


def _run_fields() -> tuple[str, ...]:
    """What a run is loaded with: the run and its instance whole; of the version and its
    integration only what a run reads (the content comes from ``_program``; anything else
    is loaded on access)."""
    return (
        *(f.name for f in HandlerRun._meta.concrete_fields),
        *(f"instance__{f.name}" for f in Instance._meta.concrete_fields),
        *(f"instance__version__{name}" for name in ("number", "checksum", "state", "integration")),
        "instance__version__integration__slug",
    )


def _load_run(run_id: int) -> HandlerRun:
    """The run with its instance, version and integration, in one query."""
    return HandlerRun.objects.select_related("instance__version__integration").only(*_run_fields()).get(pk=run_id)


def execute_run(run_id: int, *, claimed: bool = False, run: HandlerRun | None = None,
                isolated: bool = False) -> HandlerRun:
    """Run a queued ``HandlerRun`` and record how it went.

    - A run already finished (succeeded/failed) is returned untouched, so a redelivered task
      does nothing twice. A queued or running (picked up before, worker lost) run is marked
      ``running`` with ``started_at`` and ``starts + 1`` by one UPDATE (conditional on its
      status, so it cannot race a concurrent finish): no database lock is held while the
      handler runs. ``claimed=True`` means the caller already did that (``runs.claim_run``
      stamps the pickup in its claim); ``run`` is then the run as ``claim_and_load``
      returned it (PostgreSQL), not loaded again.
    - The ctx is built from the database: ``instance.runtime_config()``, the instance's
      bindings → devices (only queried when the manifest declares resources), the
      version's manifest (permissions, resources, containers) and the handler's limits.
      The run, instance, version and integration are read in one query; the manifest and
      bundle come from a per-process cache of published versions (``_program``).
    - Records ``status``, ``result``, ``logs``, ``error_code``/``error_message``/
      ``error_file``/``error_line``, ``finished_at``, ``duration_ms`` in one UPDATE, and the
      instance's ``last_run_at`` to ``LAST_RUN_AT_GRANULARITY`` (5 s). Never raises for a
      handler failure; a platform fault is logged and recorded as ``internal_error``.
    - ``isolated``: the sandbox runs in a child process with a kill (``run_spec``).
    """
    if not claimed:
        started = HandlerRun.objects.filter(pk=run_id, status__in=(RunStatus.QUEUED, RunStatus.RUNNING)).update(
            status=RunStatus.RUNNING, started_at=timezone.now(), starts=F("starts") + 1
        )
        run = _load_run(run_id)
        if not started:  # finished already (a row that is gone raised DoesNotExist)
            return run
    elif run is None:
        run = _load_run(run_id)

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
    if connection.vendor == "postgresql":
        touched = _save_outcome(run, touch_instance=touch)
    else:
        run.save(update_fields=list(_OUTCOME_FIELDS))
        # Re-checked in the UPDATE: of concurrent runs only one writes, and never backwards.
        touched = touch and Instance.objects.filter(
            Q(last_run_at__isnull=True) | Q(last_run_at__lt=stale), pk=instance.pk
        ).update(last_run_at=finished)
    if touched:
        instance.last_run_at = finished
    return run


def run_now(*, instance: Instance, handler: str, input: Any, trigger: str) -> HandlerRun:
    """Create a run of ``handler`` for ``instance`` and execute it synchronously.

    Used for RPC calls and lifecycle handlers; returns the finished row (see
    ``execute_run`` for what is recorded). RPC handlers get input/output validation.
    The caller (a web request, a command) is never held longer than the run's limit plus
    JUNCTION_RUNTIME_KILL_MARGIN_MS: the sandbox runs isolated (``runtime.isolation``) and a
    run stopped there is recorded as failed with ``timeout``.
    """
    run = HandlerRun.objects.create(
        instance=instance, handler=handler, trigger=trigger, input={} if input is None else input
    )
    return execute_run(run.pk, isolated=True)


# --- PostgreSQL: claim and load in one statement, record in one raw UPDATE --------------
# The ORM spends more building a statement and its model instances than PostgreSQL spends
# running it. On PostgreSQL the common pickup (a queued run of an enabled instance) is one
# data-modifying CTE: the same conditional UPDATE as ``runs.claim_run`` (status test and
# enabled test in its own WHERE, so of two concurrent pickups the second re-checks after
# the first commits), returning the run joined with its instance, version and integration.
# Anything else (no row claimed) goes through the ORM path unchanged.

_VERSION_FIELDS = ("id", "number", "checksum", "state", "integration")
_INTEGRATION_FIELDS = ("id", "slug")
_OUTCOME_FIELDS = (
    "status", "result", "logs", "error_code", "error_message", "error_file", "error_line", "finished_at",
    "duration_ms",
)


def _fields(model, names=None) -> list:
    """``model``'s concrete fields (those named, if given) in their declared order, the
    order ``Model.from_db`` expects its values in."""
    wanted = None if names is None else {model._meta.get_field(name) for name in names}
    return [f for f in model._meta.concrete_fields if wanted is None or f in wanted]


@cache
def _claim_sql() -> tuple[str, tuple]:
    qn = connection.ops.quote_name
    run_t, inst_t = qn(HandlerRun._meta.db_table), qn(Instance._meta.db_table)
    ver_t, integ_t = qn(IntegrationVersion._meta.db_table), qn(Integration._meta.db_table)
    groups = (
        ("c", HandlerRun, _fields(HandlerRun)),
        ("i", Instance, _fields(Instance)),
        ("v", IntegrationVersion, _fields(IntegrationVersion, _VERSION_FIELDS)),
        ("g", Integration, _fields(Integration, _INTEGRATION_FIELDS)),
    )
    columns = ", ".join(f"{alias}.{qn(f.column)}" for alias, _, fields in groups for f in fields)
    sql = (
        f"WITH c AS (UPDATE {run_t} SET {qn('status')} = %s, {qn('started_at')} = %s, {qn('starts')} = {qn('starts')} + 1"
        f" WHERE {qn('id')} = %s AND {qn('status')} = %s"
        f" AND {qn('instance_id')} IN (SELECT {qn('id')} FROM {inst_t} WHERE {qn('enabled')})"
        f" RETURNING {run_t}.*)"
        f" SELECT {columns} FROM c JOIN {inst_t} i ON i.{qn('id')} = c.{qn('instance_id')}"
        f" JOIN {ver_t} v ON v.{qn('id')} = i.{qn('version_id')}"
        f" JOIN {integ_t} g ON g.{qn('id')} = v.{qn('integration_id')}"
    )
    return sql, groups


def _build(model, fields, values, connection):
    converted = []
    for field, value in zip(fields, values):
        if hasattr(field, "from_db_value"):  # JSON text → Python, secret_config decrypted
            value = field.from_db_value(value, None, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def claim_and_load(run_id: int) -> HandlerRun | None:
    """PostgreSQL only: claim a queued run of an enabled instance (queued → running,
    ``started_at``, ``starts + 1``) and load it with its instance, version (the fields
    ``_run_fields`` loads) and integration slug, in one statement. None when nothing was
    claimed: the caller then takes ``runs.claim_run``'s other branches."""
    sql, groups = _claim_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, [RunStatus.RUNNING, timezone.now(), run_id, RunStatus.QUEUED])
        row = cursor.fetchone()
    if row is None:
        return None
    objects, start = [], 0
    for _, model, fields in groups:
        objects.append(_build(model, fields, row[start:start + len(fields)], connection))
        start += len(fields)
    run, instance, version, integration = objects
    IntegrationVersion._meta.get_field("integration").set_cached_value(version, integration)
    Instance._meta.get_field("version").set_cached_value(instance, version)
    HandlerRun._meta.get_field("instance").set_cached_value(run, instance)
    return run


@cache
def _outcome_sql(touch_instance: bool) -> tuple[str, tuple]:
    qn = connection.ops.quote_name
    fields = tuple(_fields(HandlerRun, _OUTCOME_FIELDS))
    sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    record = f"UPDATE {qn(HandlerRun._meta.db_table)} SET {sets} WHERE {qn('id')} = %s"
    if not touch_instance:
        return record, fields
    # The instance's last_run_at in the same statement (and commit): of concurrent runs
    # only one writes it, never backwards (the same test as the ORM path's UPDATE).
    last = qn("last_run_at")
    sql = (
        f"WITH r AS ({record} RETURNING 1),"
        f" i AS (UPDATE {qn(Instance._meta.db_table)} SET {last} = %s WHERE {qn('id')} = %s"
        f" AND ({last} IS NULL OR {last} < %s) AND EXISTS (SELECT 1 FROM r) RETURNING 1)"
        f" SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM i)"
    )
    return sql, fields


def _save_outcome(run: HandlerRun, *, touch_instance: bool) -> bool:
    """``run.save(update_fields=_OUTCOME_FIELDS)`` as one raw UPDATE (PostgreSQL); values
    are prepared by the model fields themselves. With ``touch_instance`` the instance's
    ``last_run_at`` moves to ``run.finished_at`` in the same statement, unless it was
    written less than LAST_RUN_AT_GRANULARITY before; returns whether it moved."""
    sql, fields = _outcome_sql(touch_instance)
    params = [*(f.get_db_prep_save(getattr(run, f.attname), connection) for f in fields), run.pk]
    if touch_instance:
        finished = run.finished_at
        params += [finished, run.instance_id, finished - LAST_RUN_AT_GRANULARITY]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        recorded, touched = cursor.fetchone() if touch_instance else (cursor.rowcount, 0)
    if recorded != 1:
        raise DatabaseError("Save with update_fields did not affect any rows.")
    return bool(touched)
