"""The ctx API, host side: every function a handler can call, with its permission check.

Lua sees (see MANIFEST.md):

==========================================================  ===========================
``ctx.device.http(alias, {method, path, query, headers,      ``device.http``
body, json, timeout})`` → ``{status, headers, body, json}``
``ctx.device.sql(alias, query, params)`` → rows              ``device.sql.read`` (+ ``device.sql.write`` to write)
``ctx.integration.cacheSet({key, value, ttl})`` /            ``integration.cache``
``cacheGet(key)``
``ctx.integration.containersSet(container, key, value)`` /   ``integration.containers``
``containersGet(container, key)`` / ``containersList(container)``
→ ``{{key, value}, …}`` / ``containersDelete(container, key)``
``ctx.log.debug|info|warn|error(message, fields)``,          ``log``
``print(...)`` / ``ctx.print(...)``
``ctx.cache.get(key)`` / ``set(key, value, ttl)`` / ``delete(key)``  ``tenant.cache``
``ctx.sql(query, params)`` → rows                            ``tenant.sql``
``ctx.callback.url(event, {ttl})`` → a one-time URL         ``callback``
``ctx.config``, ``ctx.instance`` (id, name, integration, version)  —
==========================================================  ===========================

Details publishers rely on:

- ``http``: ``method`` defaults to GET; ``path`` is joined under the device's base URL
  (``..``, absolute URLs and control characters refused); ``query`` is a table (sent sorted);
  ``json`` is encoded and sets ``Content-Type``; ``body`` is a string; ``timeout`` is in
  milliseconds (never beyond the run's deadline). Redirects are returned, not followed.
  ``json`` in the response is set when the response's content type says JSON.
- ``sql``: ``?`` placeholders, ``params`` an array; returns an array of rows (column → value;
  numerics as numbers, dates as ISO strings), an empty array for statements without rows.
- ``cacheSet``/``cache.set``: ``ttl`` in seconds, absent for no expiry; ``cacheGet`` /
  ``cache.get`` return nil for missing or expired keys.
- ``containersList`` returns at most 1000 entries ordered by key.
- ``print(...)`` (also ``ctx.print``) logs its arguments, tab-separated, at level ``info``.
- ``callback.url``: a URL that posts ``event`` to this instance once, within ``ttl``
  seconds (default 900); minted by the run's ``callbacks`` (``runtime.callbacks``).

The list of functions, the permission each needs and how many arguments each takes is
declared once, in ``marketplace.packaging.contract``; this module implements them.

A refusal is a catchable Lua error ``"permission_denied: …"`` that names the missing
permission. Aliases must be declared in the manifest's ``resources`` with the right kind
(``invalid_alias``) and bound to a device (``unbound_alias``). Storage is pluggable
(``runtime.stores``); devices come from ``runtime.devices``.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from marketplace import schemas
from marketplace.packaging import contract

from . import devices
from .devices import DeviceSpec
from .limits import Limits
from .sandbox import HostError, RunStopped
from .stores import Store

PERMISSIONS = contract.PERMISSIONS
KEY_MAX = 255
CONTAINER_LIST_MAX = 1000


def _key(value: Any, what: str = "key") -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise HostError("invalid_argument", f"{what} must be a string")
    value = str(value)
    if not value or len(value) > KEY_MAX:
        raise HostError("invalid_argument", f"{what} must be 1 to {KEY_MAX} characters")
    return value


def _ttl(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise HostError("invalid_argument", "ttl must be a positive number of seconds")
    return float(value)


class Ctx:
    """The host side of one run's ctx: permissions, devices, storage, config and logs."""

    def __init__(
        self,
        *,
        manifest: dict,
        config: dict,
        instance_info: dict,
        store: Store,
        devices: Mapping[str, DeviceSpec],
        limits: Limits,
        callbacks: Any = None,
    ):
        self.manifest = manifest
        # Mints ctx.callback.url's URLs (runtime.callbacks: a Minter); None where none can be.
        self.callbacks = callbacks
        self.permissions = frozenset(p for p in (manifest.get("permissions") or []) if isinstance(p, str))
        resources = manifest.get("resources")
        self.resources = resources if isinstance(resources, dict) else {}
        containers = manifest.get("dataContainerSchemas")
        self.container_schemas = containers if isinstance(containers, dict) else {}
        self.config = config
        self.instance_info = instance_info
        self.store = store
        self.devices = devices
        self.limits = limits
        self.logs: list[dict] = []
        self._log_bytes = 0
        self._validators: dict[str, schemas.Validator] = {}

    # --- dispatch ---
    def call(self, name: str, args: list, deadline: float) -> Any:
        method = self._METHODS.get(name)
        if method is None:
            raise HostError("invalid_argument", f"unknown ctx function {name}")
        permission, function = method
        if permission not in self.permissions:
            raise HostError(
                "permission_denied",
                f"ctx.{name} needs the '{permission}' permission, which the manifest does not declare",
            )
        args = list(args) + [None] * 3
        return function(self, args, deadline)

    def _value(self, value: Any, what: str = "value") -> Any:
        size = len(json.dumps(value, separators=(",", ":")).encode())
        if size > self.limits.value_bytes:
            raise HostError("value_too_large", f"{what} is {size} bytes as JSON, at most {self.limits.value_bytes}")
        return value

    def _device(self, alias: Any, kind: str, fname: str) -> DeviceSpec:
        if not isinstance(alias, str):
            raise HostError("invalid_argument", f"ctx.{fname}: alias must be a string")
        spec = self.resources.get(alias)
        if not isinstance(spec, dict):
            raise HostError("invalid_alias", f"'{alias}' is not a resource declared in the manifest")
        if spec.get("kind") != kind:
            raise HostError("invalid_alias", f"'{alias}' is a {spec.get('kind')} resource, not {kind}")
        device = self.devices.get(alias)
        if device is None:
            raise HostError("unbound_alias", f"resource '{alias}' is not bound to a device")
        if device.kind != kind:
            raise HostError("unbound_alias", f"resource '{alias}' is bound to a {device.kind} device, not {kind}")
        return device

    # --- devices ---
    def _http(self, args, deadline):
        device = self._device(args[0], "http", "device.http")
        request = args[1] if args[1] is not None else {}
        if not isinstance(request, dict):
            raise HostError("invalid_argument", "ctx.device.http: the request must be a table")
        return devices.http_request(device, request, deadline=deadline, max_bytes=self.limits.http_response_bytes)

    def _sql(self, args, deadline):
        device = self._device(args[0], "sql", "device.sql")
        return devices.sql_execute(
            device, args[1], args[2], write="device.sql.write" in self.permissions,
            deadline=deadline, max_rows=self.limits.sql_max_rows,
        )

    # --- instance cache ---
    def _cache_set(self, args, deadline):
        spec = args[0]
        if not isinstance(spec, dict):
            raise HostError("invalid_argument", "ctx.integration.cacheSet takes a table {key, value, ttl}")
        self.store.cache_set(_key(spec.get("key")), self._value(spec.get("value")), _ttl(spec.get("ttl")))
        return True

    def _cache_get(self, args, deadline):
        return self.store.cache_get(_key(args[0]))

    # --- containers ---
    def _container(self, name: Any) -> str:
        name = _key(name, "container")
        if name not in self.container_schemas:
            raise HostError("container_unknown", f"'{name}' is not a data container declared in the manifest")
        return name

    def _containers_set(self, args, deadline):
        container = self._container(args[0])
        key = _key(args[1])
        value = self._value(args[2])
        validator = self._validators.get(container)
        if validator is None:
            schema = self.container_schemas[container]
            try:
                schemas.check_schema(schema)
            except schemas.SchemaError:
                raise HostError("container_invalid", f"the schema of container '{container}' is not valid") from None
            validator = self._validators[container] = schemas.validator(schema)
        error = next(iter(validator.iter_errors(value)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "value"
            raise HostError("container_invalid", f"{container}/{key}: {where}: {error.message}"[:300])
        self.store.container_set(container, key, value)
        return True

    def _containers_get(self, args, deadline):
        return self.store.container_get(self._container(args[0]), _key(args[1]))

    def _containers_list(self, args, deadline):
        return self.store.container_list(self._container(args[0]), CONTAINER_LIST_MAX)

    def _containers_delete(self, args, deadline):
        return self.store.container_delete(self._container(args[0]), _key(args[1]))

    # --- logs ---
    def _log(self, level: str, message: Any, fields: Any):
        if not isinstance(message, str):
            message = json.dumps(message) if message is not None else ""
        if fields is not None and not isinstance(fields, (dict, list)):
            raise HostError("invalid_argument", "log fields must be a table")
        size = len(message.encode()) + (len(json.dumps(fields).encode()) if fields else 0)
        if len(self.logs) >= self.limits.log_lines:
            raise RunStopped("log_limit", f"more than {self.limits.log_lines} log lines")
        if self._log_bytes + size > self.limits.log_bytes:
            raise RunStopped("log_limit", f"more than {self.limits.log_bytes} bytes of logs")
        self._log_bytes += size
        self.logs.append({"level": level, "message": message, "fields": fields or {}})
        return None

    def _print(self, args, deadline):
        return self._log("info", args[0], None)

    # --- tenant ---
    def _tenant_get(self, args, deadline):
        return self.store.tenant_cache_get(_key(args[0]))

    def _tenant_set(self, args, deadline):
        self.store.tenant_cache_set(_key(args[0]), self._value(args[1]), _ttl(args[2]))
        return True

    def _tenant_delete(self, args, deadline):
        return self.store.tenant_cache_delete(_key(args[0]))

    def _tenant_sql(self, args, deadline):
        query = args[0]
        if not isinstance(query, str) or not query.strip():
            raise HostError("invalid_argument", "ctx.sql: query must be a non-empty string")
        params = devices.check_params(args[1])
        return self.store.tenant_sql(query, params, deadline=deadline, max_rows=self.limits.sql_max_rows)

    # --- callbacks ---
    def _callback_url(self, args, deadline):
        if self.callbacks is None:
            raise HostError("unavailable", "ctx.callback.url cannot mint URLs in this run")
        return self.callbacks.url(args[0], args[1])

    _METHODS: dict = {}


def _log_method(level):
    return lambda self, args, deadline: self._log(level, args[0], args[1])


# The implementation of each contract function; the contract names the permission checked.
_IMPLEMENTATIONS = {
    "device.http": Ctx._http,
    "device.sql": Ctx._sql,
    "integration.cacheSet": Ctx._cache_set,
    "integration.cacheGet": Ctx._cache_get,
    "integration.containersSet": Ctx._containers_set,
    "integration.containersGet": Ctx._containers_get,
    "integration.containersList": Ctx._containers_list,
    "integration.containersDelete": Ctx._containers_delete,
    "print": Ctx._print,
    "cache.get": Ctx._tenant_get,
    "cache.set": Ctx._tenant_set,
    "cache.delete": Ctx._tenant_delete,
    "sql": Ctx._tenant_sql,
    "callback.url": Ctx._callback_url,
    **{f"log.{level}": _log_method(level) for level in contract.LOG_LEVELS},
}
if _IMPLEMENTATIONS.keys() != contract.BY_NAME.keys():  # pragma: no cover - caught at import
    raise ImportError(f"ctx functions and the contract differ: {sorted(_IMPLEMENTATIONS.keys() ^ contract.BY_NAME.keys())}")
Ctx._METHODS = {
    function.name: (function.permission, _IMPLEMENTATIONS[function.name]) for function in contract.FUNCTIONS
}
