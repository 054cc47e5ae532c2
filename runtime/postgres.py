"""The PostgreSQL fast paths of the run pipeline, each behind a named function with the
portable ORM path beside it — and the only module of ``runtime/`` and ``marketplace/``
that asks which database it is on (``tests/runtime/test_module_sizes.py`` holds it to that),
so SQLite's one difference (the watchdog's busy timeout) is here too.

The ORM spends more building a statement and its model instances than PostgreSQL spends
running it, on paths taken once per run or per timer:
- ``claim_queued``: the pickup (a queued run, of an enabled instance unless told
  otherwise) claimed and loaded with its instance, version and integration in one
  data-modifying CTE; elsewhere a conditional UPDATE and a SELECT.
- ``record_outcome``: a run's outcome and its instance's ``last_run_at`` in one statement.
- ``advance_timers``: the dispatcher's claimed timers moved on in one UPDATE … FROM (VALUES …).
- ``estimated_count``: the planner's row estimate for the console's run list.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import cache

from django.db import DatabaseError, connection, connections
from django.db.models import F, Q
from django.utils import timezone

from marketplace.choices import RunStatus
from marketplace.models import HandlerRun, Instance, Integration, IntegrationVersion

from .models import TimerSchedule


def is_postgresql(using: str = "default") -> bool:
    return connections[using].vendor == "postgresql"


# --- Claiming a queued run ------------------------------------------------------------------

_VERSION_FIELDS = ("id", "number", "checksum", "state", "integration")
_INTEGRATION_FIELDS = ("id", "slug")


def run_fields() -> tuple[str, ...]:
    """What a run is loaded with: the run and its instance whole; of the version and its
    integration only what a run reads (the content comes from ``execution._program``;
    anything else is loaded on access). The CTE below loads the same."""
    return (
        *(f.name for f in HandlerRun._meta.concrete_fields),
        *(f"instance__{f.name}" for f in Instance._meta.concrete_fields),
        *(f"instance__version__{name}" for name in _VERSION_FIELDS if name != "id"),
        *(f"instance__version__integration__{name}" for name in _INTEGRATION_FIELDS if name != "id"),
    )


def load_run(run_id: int) -> HandlerRun:
    """The run with its instance, version and integration, in one query."""
    return HandlerRun.objects.select_related("instance__version__integration").only(*run_fields()).get(pk=run_id)


def claim_queued(run_id: int, *, enabled_only: bool = True) -> HandlerRun | None:
    """Claim a queued run (queued → running, ``started_at``, ``starts + 1``), of an enabled
    instance if ``enabled_only``, and return it loaded as ``load_run`` loads it; None when
    nothing was claimed.

    No join in the UPDATE: the status test (and the enabled test, as a subquery) sit in
    its own WHERE, so that of two concurrent pickups the second re-checks them after the
    first commits (PostgreSQL). On PostgreSQL the UPDATE and the load are one statement."""
    if is_postgresql():
        return _claim_and_load(run_id, enabled_only=enabled_only)
    claimed = HandlerRun.objects.filter(pk=run_id, status=RunStatus.QUEUED)
    if enabled_only:
        claimed = claimed.filter(instance_id__in=Instance.objects.filter(enabled=True).values("pk"))
    if not claimed.update(status=RunStatus.RUNNING, started_at=timezone.now(), starts=F("starts") + 1):
        return None
    return load_run(run_id)


def _fields(model, names=None) -> list:
    """``model``'s concrete fields (those named, if given) in their declared order, the
    order ``Model.from_db`` expects its values in."""
    wanted = None if names is None else {model._meta.get_field(name) for name in names}
    return [f for f in model._meta.concrete_fields if wanted is None or f in wanted]


@cache
def _claim_sql(enabled_only: bool) -> tuple[str, tuple]:
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
    enabled = (f" AND {qn('instance_id')} IN (SELECT {qn('id')} FROM {inst_t} WHERE {qn('enabled')})"
               if enabled_only else "")
    sql = (
        f"WITH c AS (UPDATE {run_t} SET {qn('status')} = %s, {qn('started_at')} = %s, {qn('starts')} = {qn('starts')} + 1"
        f" WHERE {qn('id')} = %s AND {qn('status')} = %s{enabled}"
        f" RETURNING {run_t}.*)"
        f" SELECT {columns} FROM c JOIN {inst_t} i ON i.{qn('id')} = c.{qn('instance_id')}"
        f" JOIN {ver_t} v ON v.{qn('id')} = i.{qn('version_id')}"
        f" JOIN {integ_t} g ON g.{qn('id')} = v.{qn('integration_id')}"
    )
    return sql, groups


def _build(model, fields, values):
    converted = []
    for field, value in zip(fields, values):
        if hasattr(field, "from_db_value"):  # JSON text → Python, secret_config decrypted
            value = field.from_db_value(value, None, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


def _claim_and_load(run_id: int, *, enabled_only: bool) -> HandlerRun | None:
    sql, groups = _claim_sql(enabled_only)
    with connection.cursor() as cursor:
        cursor.execute(sql, [RunStatus.RUNNING, timezone.now(), run_id, RunStatus.QUEUED])
        row = cursor.fetchone()
    if row is None:
        return None
    objects, start = [], 0
    for _, model, fields in groups:
        objects.append(_build(model, fields, row[start:start + len(fields)]))
        start += len(fields)
    run, instance, version, integration = objects
    IntegrationVersion._meta.get_field("integration").set_cached_value(version, integration)
    Instance._meta.get_field("version").set_cached_value(instance, version)
    HandlerRun._meta.get_field("instance").set_cached_value(run, instance)
    return run


# --- Recording an outcome -------------------------------------------------------------------

OUTCOME_FIELDS = (
    "status", "result", "logs", "error_code", "error_message", "error_file", "error_line", "finished_at",
    "duration_ms",
)


def record_outcome(run: HandlerRun, *, touch_instance: bool, stale: datetime) -> bool:
    """Save the run's ``OUTCOME_FIELDS``; with ``touch_instance``, move its instance's
    ``last_run_at`` to ``run.finished_at`` unless it was written at or after ``stale``
    (re-checked in the UPDATE: of concurrent runs only one writes, and never backwards).
    Returns whether ``last_run_at`` moved. On PostgreSQL one raw statement (and commit)."""
    if is_postgresql():
        return _save_outcome(run, touch_instance=touch_instance, stale=stale)
    run.save(update_fields=list(OUTCOME_FIELDS))
    return touch_instance and bool(Instance.objects.filter(
        Q(last_run_at__isnull=True) | Q(last_run_at__lt=stale), pk=run.instance_id
    ).update(last_run_at=run.finished_at))


@cache
def _outcome_sql(touch_instance: bool) -> tuple[str, tuple]:
    qn = connection.ops.quote_name
    fields = tuple(_fields(HandlerRun, OUTCOME_FIELDS))
    sets = ", ".join(f"{qn(f.column)} = %s" for f in fields)
    record = f"UPDATE {qn(HandlerRun._meta.db_table)} SET {sets} WHERE {qn('id')} = %s"
    if not touch_instance:
        return record, fields
    last = qn("last_run_at")
    sql = (
        f"WITH r AS ({record} RETURNING 1),"
        f" i AS (UPDATE {qn(Instance._meta.db_table)} SET {last} = %s WHERE {qn('id')} = %s"
        f" AND ({last} IS NULL OR {last} < %s) AND EXISTS (SELECT 1 FROM r) RETURNING 1)"
        f" SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM i)"
    )
    return sql, fields


def _save_outcome(run: HandlerRun, *, touch_instance: bool, stale: datetime) -> bool:
    """``run.save(update_fields=OUTCOME_FIELDS)`` as one raw UPDATE; values are prepared by
    the model fields themselves."""
    sql, fields = _outcome_sql(touch_instance)
    params = [*(f.get_db_prep_save(getattr(run, f.attname), connection) for f in fields), run.pk]
    if touch_instance:
        params += [run.finished_at, run.instance_id, stale]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        recorded, touched = cursor.fetchone() if touch_instance else (cursor.rowcount, 0)
    if recorded != 1:
        raise DatabaseError("Save with update_fields did not affect any rows.")
    return bool(touched)


# --- The dispatcher's timers ----------------------------------------------------------------

def advance_timers(rows: list[TimerSchedule]) -> None:
    """Write the claimed rows' new next_run_at / last_run_at / enabled in one statement.
    On PostgreSQL an UPDATE … FROM (VALUES …): Django's bulk_update builds a CASE per row
    and field, which costs about a millisecond per row at this size."""
    if not is_postgresql():
        TimerSchedule.objects.bulk_update(rows, ["next_run_at", "last_run_at", "enabled"])
        return
    table = TimerSchedule._meta.db_table
    values = ", ".join(["(%s::bigint, %s::timestamptz, %s::timestamptz, %s::boolean)"] * len(rows))
    params = [p for row in rows for p in (row.pk, row.next_run_at, row.last_run_at, row.enabled)]
    with connection.cursor() as cursor:
        cursor.execute(
            f'UPDATE "{table}" AS t SET next_run_at = v.next_run_at, last_run_at = v.last_run_at, '
            f"enabled = v.enabled FROM (VALUES {values}) AS v(id, next_run_at, last_run_at, enabled) "
            "WHERE t.id = v.id",
            params,
        )


# --- The console's run list -----------------------------------------------------------------

def estimated_count(queryset) -> int | None:
    """The planner's row estimate for ``queryset`` on PostgreSQL; None elsewhere (count
    exactly there)."""
    using = connections[queryset.db]
    if using.vendor != "postgresql":
        return None
    sql, params = queryset.query.sql_with_params()
    with using.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return int(plan[0]["Plan"]["Plan Rows"])


# --- The watchdog's own connection ----------------------------------------------------------

def wait_for_locks(using, seconds: float) -> None:
    """Let a statement on connection ``using`` wait up to ``seconds`` for the database's
    write lock (SQLite: its busy timeout; PostgreSQL waits for row locks as it is)."""
    if using.vendor == "sqlite":
        using.ensure_connection()
        with using.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")


def commit_asynchronously() -> None:
    """Inside a transaction: on PostgreSQL, let its commit return before the WAL is
    flushed (a crash may lose it, never consistency). For writes cheaper to lose than to
    wait for, such as a webhook bucket's take; elsewhere nothing."""
    if is_postgresql():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit TO OFF")
