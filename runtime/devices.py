"""Alias → bound device, and the HTTP client that talks to devices on a handler's behalf
(the SQL clients are ``runtime.device_sql``).

- ``DeviceSpec`` is what the runtime knows about a bound device (from a ``Device`` row, or
  from ``run_handler --bind``). Secrets stay host-side: Lua never sees them.
- ``http_request`` sends one request to the device's base URL only: the handler gives a
  path (joined under the base path; ``..``, absolute URLs, control characters refused),
  redirects are never followed (a 3xx is returned as is, so nothing reaches another
  origin), the response body is capped, and one deadline bounds the whole exchange: name
  lookup, connect, TLS handshake, sending, status line, headers and body (chunked too).
  Every socket operation waits at most until that deadline (``runtime.deadline_http``), so
  a device that drips its answer a byte at a time is cut off on time.
- Text from devices is always valid Unicode: invalid UTF-8 and lone surrogates (a JSON
  ``"\\ud800"`` escape) become U+FFFD instead of failing the call.
- HTTP and PostgreSQL devices connect only where the egress policy allows
  (``marketplace.egress``): never the platform's own database, broker or caches, nor
  metadata or other refused networks; private networks only when allowed. The check is
  made on the addresses the name resolves to, and the connection goes to the checked
  address (PostgreSQL: ``hostaddr``), so DNS rebinding cannot move it.
"""
from __future__ import annotations

import base64
import http.client
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from marketplace import egress
from marketplace.validators import sqlite_device_folder

from .deadline_http import DeadlineHTTPConnection, DeadlineHTTPSConnection
from .outcomes import HostError, RunStopped

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
