"""Alias → bound device, and the clients that talk to devices on a handler's behalf.

- ``DeviceSpec`` is what the runtime knows about a bound device (from a ``Device`` row, or
  from ``run_handler --bind``). Secrets stay host-side: Lua never sees them.
- ``http_request`` sends one request to the device's base URL only: the handler gives a
  path (joined under the base path; ``..``, absolute URLs, control characters refused),
  redirects are never followed (a 3xx is returned as is, so nothing reaches another
  origin), the response body is capped, and one deadline bounds the whole exchange: name
  lookup, connect, TLS handshake, sending, status line, headers and body (chunked too).
  Every socket operation waits at most until that deadline (``runtime.deadline_http``), so
  a device that drips its answer a byte at a time is cut off on time.
- ``sql_execute`` runs one parameterized statement (``?`` placeholders) on a SQLite file or
  a PostgreSQL database, read-only unless ``write``. SQLite opens the file with
  ``mode=ro`` and ``query_only`` and runs one statement per ``execute``. PostgreSQL sends
  the statement with the extended protocol (which refuses several commands in one), in a
  session whose transactions are read-only by default and whose ``statement_timeout`` is
  set at connection time; the client also cancels the statement at the deadline, so
  nothing the statement does to its own session outlives the call.
- Text from devices is always valid Unicode: invalid UTF-8 and lone surrogates (a JSON
  ``"\\ud800"`` escape) become U+FFFD instead of failing the call.
- A SQLite device bound from a ``Device`` row may only open files inside its
  organization's device folder (``marketplace.validators.confined_sqlite_path``, checked
  again here at run time); no SQLite device may open the platform's own files (its
  database, tenant SQL files, broker queue, uploads): ``platform_paths()``.
- HTTP and PostgreSQL devices connect only where the egress policy allows
  (``marketplace.egress``): never the platform's own database, broker or caches, nor
  metadata or other refused networks; private networks only when allowed. The check is
  made on the addresses the name resolves to, and the connection goes to the checked
  address (PostgreSQL: ``hostaddr``), so DNS rebinding cannot move it.
- ``sqlite_execute`` is shared with the tenant store: an authorizer refuses ATTACH, DETACH,
  PRAGMA, transactions and virtual tables, so a statement can only touch its own file.
"""
from __future__ import annotations

import base64
import datetime as dt
import decimal
import http.client
import json
import math
import os
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from django.core.exceptions import ValidationError

from marketplace import egress
from marketplace.validators import confined_sqlite_path, sqlite_device_folder

from .deadline_http import DeadlineHTTPConnection, DeadlineHTTPSConnection, addresses
from .sandbox import HostError, RunStopped

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FORBIDDEN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "upgrade", "te"})


@dataclass(frozen=True)
class DeviceSpec:
    kind: str  # "http" | "sql"
    base_url: str = ""
    dsn: str = ""
    headers: dict = field(default_factory=dict)
    credentials: dict = field(default_factory=dict)
    name: str = ""
    # A SQLite file must lie in this folder (its organization's); "" for a developer's own
    # binding (``run_handler --bind``), which may open any file but the platform's.
    sqlite_folder: str = ""

    @classmethod
    def from_device(cls, device) -> DeviceSpec:
        return cls(
            kind=device.kind,
            base_url=device.base_url,
            dsn=device.dsn,
            headers=dict(device.headers or {}),
            credentials=dict(device.credentials or {}),
            name=device.name,
            sqlite_folder=str(sqlite_device_folder(device.organization_id)),
        )

    @classmethod
    def from_target(cls, target: str) -> DeviceSpec:
        """``http(s)://…`` is an HTTP device; ``sqlite:///…``/``postgres(ql)://…`` a SQL one."""
        if target.startswith(("http://", "https://")):
            return cls(kind="http", base_url=target, name=target)
        if target.startswith(("sqlite:///", "postgresql://", "postgres://")):
            return cls(kind="sql", dsn=target, name=target)
        raise ValueError(f"{target!r} is neither an http(s):// URL nor a sqlite:///, postgresql:// DSN")


def bindings_for(instance) -> dict[str, DeviceSpec]:
    """The instance's alias → device map (one query)."""
    return {
        binding.alias: DeviceSpec.from_device(binding.device)
        for binding in instance.bindings.select_related("device")
    }


def remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RunStopped("timeout", "wall-clock time limit reached")
    return left


_SURROGATES = re.compile(r"[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with lone surrogates (which Lua strings, UTF-8 and PostgreSQL cannot hold)
    replaced by U+FFFD; a JSON ``"\\ud800"`` escape decodes to one."""
    return _SURROGATES.sub("\ufffd", text)


def valid_tree(value: Any) -> Any:
    """``valid_text`` applied to every string of parsed JSON, keys included."""
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, list):
        return [valid_tree(v) for v in value]
    if isinstance(value, dict):
        return {valid_text(k): valid_tree(v) for k, v in value.items()}
    return value


# --- HTTP ---------------------------------------------------------------------------------

def join_path(base_path: str, path: str) -> tuple[str, str]:
    """(path, query) under ``base_path``; refuses anything that could leave it."""
    if not isinstance(path, str):
        raise HostError("invalid_argument", "path must be a string")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in path) or "\\" in path or "#" in path:
        raise HostError("invalid_argument", "path must not contain spaces, control characters, '\\' or '#'")
    if "://" in path or path.startswith("//"):
        raise HostError("invalid_argument", "path must be a path on the device, not a URL")
    path, _, query = path.partition("?")
    segments = [s for s in path.split("/")]
    for segment in segments:
        if unquote(segment) in {".", ".."} or "/" in unquote(segment):
            raise HostError("invalid_argument", "path must not contain '.' or '..' segments")
    joined = base_path.rstrip("/") + "/" + path.lstrip("/")
    return joined, query


def http_request(device: DeviceSpec, request: dict, *, deadline: float, max_bytes: int) -> dict:
    """One request to the bound device; returns ``{status, headers, body, json}``."""
    base = urlsplit(device.base_url)
    try:
        # Given explicitly, so http.client never parses an IPv6 host for a port.
        port = base.port or (443 if base.scheme == "https" else 80)
    except ValueError:
        port = None
    if base.scheme not in {"http", "https"} or not base.hostname or port is None:
        raise HostError("http_error", "the bound device has no valid http(s) base URL")
    method = str(request.get("method") or "GET").upper()
    if method not in HTTP_METHODS:
        raise HostError("invalid_argument", f"method must be one of {', '.join(sorted(HTTP_METHODS))}")
    path, query = join_path(base.path or "/", request.get("path") or "/")
    extra_query = request.get("query")
    if extra_query:
        if not isinstance(extra_query, dict):
            raise HostError("invalid_argument", "query must be a table of names to values")
        encoded = urlencode(sorted((str(k), _query_value(v)) for k, v in extra_query.items()), doseq=True)
        query = f"{query}&{encoded}" if query else encoded
    target = quote(path, safe="/%:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")

    headers: dict[str, str] = {}
    given = request.get("headers") or {}
    if not isinstance(given, dict):
        raise HostError("invalid_argument", "headers must be a table of names to strings")
    for name, value in list(given.items()) + list((device.headers or {}).items()):
        name, value = str(name), value if isinstance(value, str) else json.dumps(value)
        if name.lower() in FORBIDDEN_HEADERS:
            raise HostError("invalid_argument", f"header {name!r} is set by the platform")
        if any(c in name + value for c in "\r\n\0"):
            raise HostError("invalid_argument", "header names and values must not contain line breaks")
        headers[name] = value
    creds = device.credentials or {}
    if creds.get("token"):
        headers["Authorization"] = f"Bearer {creds['token']}"
    elif creds.get("username") is not None:
        raw = f"{creds.get('username')}:{creds.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()

    body = request.get("body")
    if request.get("json") is not None:
        body = json.dumps(request["json"], separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")
    elif body is not None:
        if not isinstance(body, str):
            raise HostError("invalid_argument", "body must be a string (use json = … for tables)")
        body = body.encode()

    # One deadline for the whole exchange: the run's, or sooner when the handler asks.
    exchange_deadline = deadline
    remaining(deadline)
    asked = request.get("timeout")
    if isinstance(asked, (int, float)) and not isinstance(asked, bool) and asked > 0:
        exchange_deadline = min(deadline, time.monotonic() + asked / 1000.0)
    cls = DeadlineHTTPSConnection if base.scheme == "https" else DeadlineHTTPConnection
    conn = cls(base.hostname, port, deadline=exchange_deadline, egress=egress.policy())
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        chunks, size = [], 0
        while not response.isclosed():
            chunk = response.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise HostError("response_too_large", f"the response is larger than {max_bytes} bytes")
            chunks.append(chunk)
        status = response.status
        response_headers: dict[str, str] = {}
        for name, value in response.getheaders():
            key = name.lower()
            response_headers[key] = f"{response_headers[key]}, {value}" if key in response_headers else value
    except TimeoutError:  # socket.timeout is TimeoutError
        remaining(deadline)  # stops the run when it is the run's own deadline
        raise HostError("http_error", f"{method} {path}: timed out") from None
    except egress.EgressRefused as exc:
        raise HostError("http_error", f"{method} {path}: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise HostError("http_error", f"{method} {path}: {exc.__class__.__name__}: {str(exc)[:200]}") from None
    finally:
        conn.close()
    text = valid_text(b"".join(chunks).decode("utf-8", "replace"))
    parsed = None
    if "json" in response_headers.get("content-type", ""):
        try:
            parsed = valid_tree(json.loads(text))
        except (ValueError, RecursionError):
            parsed = None
    return {"status": status, "headers": response_headers, "body": text, "json": parsed}


def _query_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    return "" if value is None else str(value)


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
