"""The SQL device clients: ``sql_execute`` runs one parameterized statement (``?``
placeholders) on a bound SQLite file or PostgreSQL database for a handler (alias → device
is ``runtime.devices``), read-only unless ``write``.

- SQLite opens the file with ``mode=ro`` and ``query_only`` and runs one statement per
  ``execute``. ``sqlite_execute`` is shared with the tenant store (``runtime.stores``): an
  authorizer refuses ATTACH, DETACH, PRAGMA, transactions and virtual tables, so a
  statement can only touch its own file.
- A SQLite device bound from a ``Device`` row may only open files inside its
  organization's device folder (``marketplace.validators.confined_sqlite_path``, checked
  again here at run time); no SQLite device may open the platform's own files (its
  database, tenant SQL files, broker queue, uploads): ``platform_paths()``.
- PostgreSQL sends the statement with the extended protocol (which refuses several
  commands in one), in a session whose transactions are read-only by default and whose
  ``statement_timeout`` is set at connection time; the client also cancels the statement
  at the deadline, so nothing the statement does to its own session outlives the call.
  It connects only where the egress policy allows (``marketplace.egress``), to the
  address checked (``hostaddr``), so DNS rebinding cannot move it.
- Text from devices is always valid Unicode (``devices.valid_text``).
"""
from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from django.core.exceptions import ValidationError

from marketplace import egress
from marketplace.validators import confined_sqlite_path

from .deadline_http import addresses
from .devices import DeviceSpec, remaining, valid_text
from .outcomes import HostError, RunStopped

# --- SQL ----------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {valid_text(str(k)): _plain(v) for k, v in value.items()}
    return str(value)


def check_params(params) -> list:
    """``params`` as a list of scalars (nil or an empty table: no parameters)."""
    if params is None:
        return []
    if isinstance(params, dict) and not params:
        return []
    if not isinstance(params, list):
        raise HostError("invalid_argument", "params must be an array of values")
    for value in params:
        if isinstance(value, (dict, list)):
            raise HostError("invalid_argument", "params must be strings, numbers, booleans or nil")
    return params


def _rows(cursor, max_rows: int) -> list[dict]:
    if cursor.description is None:
        return []
    names = [valid_text(col[0]) for col in cursor.description]
    fetched = cursor.fetchmany(max_rows + 1)
    if len(fetched) > max_rows:
        raise HostError("too_many_rows", f"the query returned more than {max_rows} rows; use LIMIT")
    return [{name: _plain(value) for name, value in zip(names, row)} for row in fetched]


# The only actions a statement may perform through sqlite_execute; everything else
# (ATTACH and VACUUM INTO, DETACH, PRAGMA, BEGIN/COMMIT/SAVEPOINT, virtual tables) is denied.
_SQLITE_ALLOWED = {
    sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE,
    sqlite3.SQLITE_INSERT, sqlite3.SQLITE_UPDATE, sqlite3.SQLITE_DELETE,
    sqlite3.SQLITE_CREATE_TABLE, sqlite3.SQLITE_CREATE_INDEX, sqlite3.SQLITE_CREATE_VIEW,
    sqlite3.SQLITE_CREATE_TRIGGER, sqlite3.SQLITE_DROP_TABLE, sqlite3.SQLITE_DROP_INDEX,
    sqlite3.SQLITE_DROP_VIEW, sqlite3.SQLITE_DROP_TRIGGER, sqlite3.SQLITE_ALTER_TABLE,
    sqlite3.SQLITE_REINDEX, sqlite3.SQLITE_ANALYZE,
    sqlite3.SQLITE_CREATE_TEMP_TABLE, sqlite3.SQLITE_CREATE_TEMP_INDEX, sqlite3.SQLITE_CREATE_TEMP_VIEW,
    sqlite3.SQLITE_CREATE_TEMP_TRIGGER, sqlite3.SQLITE_DROP_TEMP_TABLE, sqlite3.SQLITE_DROP_TEMP_INDEX,
    sqlite3.SQLITE_DROP_TEMP_VIEW, sqlite3.SQLITE_DROP_TEMP_TRIGGER,
}
_SQLITE_DENIED_FUNCTIONS = {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"}


def _authorizer(action, arg1, arg2, db_name, trigger):
    if action not in _SQLITE_ALLOWED:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() in _SQLITE_DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if db_name not in (None, "main", "temp"):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def _utf8_or_replacement(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def guard_sqlite(conn: sqlite3.Connection, deadline: float) -> None:
    """Authorizer, deadline (progress handler) and size limits on a connection."""
    conn.set_authorizer(_authorizer)
    # Text that is not UTF-8 (or encodes a surrogate, as char(55296) does) is read with
    # U+FFFD in its place rather than failing the whole statement.
    conn.text_factory = _utf8_or_replacement
    conn.set_progress_handler(lambda: 1 if time.monotonic() > deadline else 0, 10_000)
    conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 10_000_000)
    conn.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)


def sqlite_execute(conn: sqlite3.Connection, query: str, params: list, *, deadline: float, max_rows: int,
                   read_only_permission: str | None = None) -> list[dict]:
    """Run one statement on a guarded connection; errors become HostError/RunStopped."""
    try:
        cursor = conn.execute(query, params)
        return _rows(cursor, max_rows)
    except sqlite3.DatabaseError as exc:
        message = str(exc)
        if "interrupted" in message and time.monotonic() > deadline:
            raise RunStopped("timeout", "wall-clock time limit reached (in a SQL query)") from None
        if read_only_permission and ("readonly" in message or "read-only" in message or "query_only" in message):
            raise HostError(
                "permission_denied", f"writing needs the '{read_only_permission}' permission, which the manifest does not declare"
            ) from None
        if "not authorized" in message:
            raise HostError("sql_error", "statement not allowed (ATTACH, PRAGMA, transactions and extensions are refused)") from None
        raise HostError("sql_error", message[:300]) from None
    except sqlite3.Error as exc:
        raise HostError("sql_error", str(exc)[:300]) from None


def sqlite_path(dsn: str) -> str:
    return dsn[len("sqlite:///"):]


def sql_execute(device: DeviceSpec, query: Any, params: Any, *, write: bool, deadline: float,
                max_rows: int) -> list[dict]:
    """One statement against a bound SQL device; rows as dicts (column → value)."""
    if not isinstance(query, str) or not query.strip():
        raise HostError("invalid_argument", "query must be a non-empty string")
    params = check_params(params)
    dsn = device.dsn or ""
    if dsn.startswith("sqlite:///"):
        return _sqlite_device(device_sqlite_file(device), query, params, write=write, deadline=deadline,
                              max_rows=max_rows)
    if dsn.startswith(("postgresql://", "postgres://")):
        creds = device.credentials or {}
        login = {k: str(v) for k, v in (("user", creds.get("username")), ("password", creds.get("password"))) if v}
        return _postgres_device(dsn, query, params, write=write, deadline=deadline, max_rows=max_rows, login=login)
    raise HostError("sql_error", "the bound device has no sqlite:/// or postgresql:// DSN")


def device_sqlite_file(device: DeviceSpec) -> str:
    """The file a SQLite device opens: inside its organization's folder (resolved again
    now, so a symlink or file moved in since the device was saved cannot lead out), never
    one of the platform's own files."""
    if device.sqlite_folder:
        try:
            path = str(confined_sqlite_path(device.dsn, Path(device.sqlite_folder)))
        except ValidationError as exc:
            raise HostError("sql_error", exc.messages[0]) from None
    elif "\x00" in device.dsn:
        raise HostError("sql_error", "a DSN must not contain NUL characters")
    else:
        path = sqlite_path(device.dsn)
    _refuse_platform_files(path)
    return path


def platform_paths() -> list[Path]:
    """Files and folders of the platform itself that no SQLite device may point at: its own
    database, the tenant SQL files, the broker queue, uploads."""
    from django.conf import settings

    paths = []
    database = settings.DATABASES.get("default", {})
    if database.get("ENGINE", "").endswith("sqlite3") and str(database.get("NAME", "")).startswith("/"):
        paths.append(Path(database["NAME"]))
    for name in ("JUNCTION_RUNTIME_TENANT_DIR", "BROKER_DIR", "MEDIA_ROOT"):
        value = getattr(settings, name, None)
        if value:
            paths.append(Path(value))
    return [p.resolve() for p in paths]


def _refuse_platform_files(path: str) -> None:
    target = Path(path).resolve()
    for forbidden in platform_paths():
        if target == forbidden or forbidden in target.parents or target.name.startswith(forbidden.name + "-") and (
            target.parent == forbidden.parent
        ):
            raise HostError("sql_error", "the bound database file belongs to the platform and cannot be opened")


def _sqlite_device(path, query, params, *, write, deadline, max_rows):
    mode = "rw" if write else "ro"
    uri = f"file:{quote(path)}?mode={mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=min(5.0, remaining(deadline)), isolation_level=None,
                               check_same_thread=False)
    except sqlite3.Error as exc:
        raise HostError("sql_error", f"cannot open the database: {exc}") from None
    try:
        if not write:
            conn.execute("PRAGMA query_only = ON")
        guard_sqlite(conn, deadline)
        return sqlite_execute(conn, query, params, deadline=deadline, max_rows=max_rows,
                              read_only_permission=None if write else "device.sql.write")
    finally:
        conn.close()


def postgres_query(query: str) -> str:
    """``?`` placeholders (outside quotes) → ``%s``; literal ``%`` doubled for psycopg."""
    out, quote_char = [], None
    for char in query:
        if quote_char:
            if char == quote_char:
                quote_char = None
        elif char in "'\"":
            quote_char = char
        elif char == "?":
            out.append("%s")
            continue
        out.append("%%" if char == "%" else char)
    return "".join(out)


# The message PostgreSQL gives when the extended protocol meets several statements.
_MULTIPLE_COMMANDS = "cannot insert multiple commands into a prepared statement"


def _postgres_device(dsn, query, params, *, write, deadline, max_rows, login=None):
    """One statement in a session of its own.

    - In pipeline mode psycopg always uses the extended protocol, where PostgreSQL refuses
      more than one statement: no ``COMMIT; DELETE …`` after the platform's ``BEGIN READ ONLY``.
    - Without ``write``, the session's transactions are read-only by default and the
      transaction is opened ``READ ONLY``; a single statement cannot turn that off.
    - ``statement_timeout`` is set when connecting (a margin past the deadline, as a
      backstop) and the client cancels the statement at the deadline, so a statement that
      changes its own timeout still ends on time. The session ends with the call.
    The device's ``credentials`` (username/password), when set, override the DSN's."""
    import psycopg
    from psycopg import errors
    from psycopg.conninfo import conninfo_to_dict

    try:
        own = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        raise HostError("sql_error", f"the DSN is not valid: {str(exc).splitlines()[0][:200]}") from None
    own_options = own.get("options") or ""
    # libpq fills what a DSN leaves out from the platform's environment and files
    # (PGPASSWORD, ~/.pgpass): the device's server must never be sent the platform's password.
    secrets = {"passfile": os.devnull}
    if not own.get("password") and not (login or {}).get("password"):
        secrets["password"] = ""
    # Later -c settings win over the DSN's own ones.
    options = f"{own_options} -c statement_timeout={math.ceil(remaining(deadline) * 1000) + 250}"
    if not write:
        options += " -c default_transaction_read_only=on"
    server = _postgres_address(dsn, deadline)
    try:
        conn = psycopg.connect(dsn, connect_timeout=max(1, math.ceil(remaining(deadline))), autocommit=False,
                               options=options.strip(), **server, **secrets, **(login or {}))
    except psycopg.Error as exc:
        raise HostError("sql_error", f"cannot connect to the database: {str(exc).splitlines()[0][:200]}") from None
    if not write:
        conn.read_only = True  # BEGIN READ ONLY; with write, the database's own default stands
    cancelled = threading.Event()

    def cancel_at_deadline():
        cancelled.set()
        try:
            conn.cancel_safe(timeout=2.0)
        except psycopg.Error:
            pass  # the server's statement_timeout is the backstop

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), cancel_at_deadline)
    timer.daemon = True
    timer.start()
    try:
        cursor = conn.cursor()
        with conn.pipeline():
            cursor.execute(postgres_query(query), params)
        rows = _rows(cursor, max_rows)
        if write:
            conn.commit()
        return rows
    except errors.ReadOnlySqlTransaction:
        raise HostError(
            "permission_denied", "writing needs the 'device.sql.write' permission, which the manifest does not declare"
        ) from None
    except errors.QueryCanceled:
        if cancelled.is_set():
            raise RunStopped("timeout", "wall-clock time limit reached (in a SQL query)") from None
        remaining(deadline)
        raise HostError("sql_error", "the query was cancelled") from None
    except errors.SyntaxError as exc:
        if _MULTIPLE_COMMANDS in str(exc):
            raise HostError("sql_error", "one statement per call: the query holds several") from None
        raise HostError("sql_error", _pg_message(exc)) from None
    except psycopg.Error as exc:
        raise HostError("sql_error", _pg_message(exc)) from None
    except UnicodeDecodeError:
        raise HostError("sql_error", "the database sent text that is not valid in its declared encoding") from None
    finally:
        timer.cancel()
        timer.join()  # a cancel in flight must not meet a closing connection
        conn.close()


def _postgres_address(dsn: str, deadline: float) -> dict[str, str]:
    """host/hostaddr/port for libpq: the DSN's one server, resolved here and checked by
    the egress policy, so libpq connects only to the addresses that were checked (it
    would otherwise look the name up again, or fall back to a Unix socket)."""
    try:
        host, port = egress.postgres_server(dsn)
        found = addresses(host, port, deadline)
        policy = egress.policy()
        for *_rest, address in found:
            policy.check(address[0], port)
    except egress.EgressRefused as exc:
        raise HostError("sql_error", f"cannot connect to the database: {exc}") from None
    except TimeoutError:
        remaining(deadline)
        raise HostError("sql_error", f"cannot connect to the database: looking up {host} timed out") from None
    except OSError as exc:
        raise HostError("sql_error", f"cannot connect to the database: {host}: {exc.strerror or exc}") from None
    checked = list(dict.fromkeys(egress.parse_address(info[4][0]).compressed for info in found))
    if not checked:
        raise HostError("sql_error", f"cannot connect to the database: {host} has no address")
    # libpq tries each host/hostaddr pair in turn, as it would the name's addresses.
    return {"host": ",".join([host] * len(checked)), "hostaddr": ",".join(checked),
            "port": ",".join([str(port)] * len(checked))}


def _pg_message(exc) -> str:
    message = getattr(getattr(exc, "diag", None), "message_primary", None) or str(exc).splitlines()[0]
    return valid_text(message)[:300]
