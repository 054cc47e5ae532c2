"""The manifest rules: Junction's JSON Schema for manifest.json, then what a schema cannot say
(embedded JSON Schemas are valid and their defaults fit, schedules parse and are not too
frequent, one lifecycle handler per moment, limits under the platform maxima)."""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import jsonschema
from django.conf import settings
from referencing.exceptions import Unresolvable

from .. import jsonvalues, schemas
from .report import Report
from .schedules import schedule_problems

SCHEMA_PATH = Path(__file__).with_name("manifest_schema.json")
CODE_KEYWORD = "x-junction-code"

# Platform maxima of handler limits: the runtime's settings (runtime/limits.py).
LIMIT_SETTINGS = {
    "timeoutMs": "JUNCTION_RUNTIME_MAX_TIMEOUT_MS",
    "memoryMb": "JUNCTION_RUNTIME_MAX_MEMORY_MB",
    "instructions": "JUNCTION_RUNTIME_MAX_INSTRUCTIONS",
}
RETRY_SETTINGS = {
    "attempts": "JUNCTION_RETRY_MAX_ATTEMPTS",
    "backoff": "JUNCTION_RETRY_MAX_DELAY_SECONDS",
}
# What a manifest may declare.
CAP_SETTINGS = {
    "handlers": "JUNCTION_MANIFEST_MAX_HANDLERS",
    "timers": "JUNCTION_MANIFEST_MAX_TIMERS",
    "bytes": "JUNCTION_MANIFEST_MAX_BYTES",
}


@lru_cache(maxsize=1)
def manifest_schema() -> dict:
    """Junction's JSON Schema (Draft 2020-12) for manifest.json."""
    return json.loads(SCHEMA_PATH.read_text())


def min_timer_seconds() -> int:
    return int(settings.JUNCTION_MIN_TIMER_SECONDS)


def limit_maximum(name: str, table: dict = LIMIT_SETTINGS) -> int:
    return int(getattr(settings, table[name]))


def dotted(parts) -> str:
    return ".".join(str(p) for p in parts)


def _schema_errors(manifest: dict, report: Report) -> set[str]:
    """Validate against the manifest schema. Returns the dotted paths found broken so later
    checks do not pile up on them."""
    validator = schemas.validator(manifest_schema())
    broken: set[str] = set()
    for error in sorted(validator.iter_errors(manifest), key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        _report_schema_error(error, report, broken)
    return broken


def _leaf_errors(error: jsonschema.ValidationError):
    """if/then and allOf wrap the real failures in context; report the innermost ones."""
    if error.context:
        for sub in error.context:
            yield from _leaf_errors(sub)
    else:
        yield error


def _report_schema_error(error: jsonschema.ValidationError, report: Report, broken: set[str]) -> None:
    for leaf in _leaf_errors(error):
        parts = list(leaf.absolute_path)
        path = dotted(parts)
        broken.add(path)
        validator = leaf.validator
        schema = leaf.schema if isinstance(leaf.schema, dict) else {}
        if validator == "additionalProperties" and isinstance(leaf.instance, dict):
            allowed = set(schema.get("properties") or {})
            for key in leaf.instance:
                if key not in allowed:
                    where = dotted(parts + [key])
                    report.add("manifest_unknown_key", f"unknown key {key!r}" + (f" in {path}" if path else " at the top level"),
                               path=where)
                    broken.add(where)
        elif validator == "required":
            missing = leaf.message.split("'")[1] if "'" in leaf.message else ""
            where = dotted(parts + [missing]) if missing else path
            report.add("manifest_required", f"{missing or 'a value'} is required", path=where)
            broken.add(where)
        elif validator == "type":
            expected = leaf.validator_value if isinstance(leaf.validator_value, str) else " or ".join(leaf.validator_value)
            report.add("manifest_type", f"must be of type {expected}, got {type(leaf.instance).__name__}: {_short(leaf.instance)}",
                       path=path or None)
        elif validator == "propertyNames":
            report.add("manifest_invalid", f"{path}: {leaf.message}", path=path)
        elif CODE_KEYWORD in schema:
            code = schema[CODE_KEYWORD]
            if validator == "enum":
                options = ", ".join(map(str, leaf.validator_value))
                report.add(code, f"{leaf.instance!r} is not one of: {options}", path=path)
            else:
                report.add(code, f"{leaf.instance!r} is not valid here: {leaf.message}", path=path)
        else:
            report.add("manifest_invalid", leaf.message, path=path or None)


def _short(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- Embedded JSON Schemas --------------------------------------------------------------------

_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_SINGLE = ("items", "additionalProperties", "not", "if", "then", "else", "contains",
                     "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems")


def _subschemas(schema: dict, path: list):
    yield schema, path
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                if isinstance(sub, dict):
                    yield from _subschemas(sub, path + [key, name])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                if isinstance(sub, dict):
                    yield from _subschemas(sub, path + [key, i])
    for key in _SUBSCHEMA_SINGLE:
        if isinstance(schema.get(key), dict):
            yield from _subschemas(schema[key], path + [key])


def check_json_schema(schema, path: str, report: Report) -> bool:
    """``schema`` is valid Draft 2020-12 and every ``default`` in it satisfies its own
    subschema. Returns False when the schema itself is invalid."""
    try:
        schemas.check_schema(schema)
    except schemas.SchemaError as exc:
        where = dotted([path, *exc.absolute_path]) if exc.absolute_path else path
        report.add("schema_invalid", f"not a valid JSON Schema (Draft 2020-12): {exc.message}", path=where)
        return False
    except RecursionError:
        report.add("schema_invalid", "the schema nests too deeply", path=path)
        return False
    if not isinstance(schema, dict):
        return True
    root = schemas.validator(schema)
    for sub, parts in _subschemas(schema, []):
        if "default" not in sub:
            continue
        try:
            errors = list(root.descend(sub["default"], {k: v for k, v in sub.items() if k != "default"}))
        except Unresolvable as exc:  # a $ref that points nowhere
            report.add("schema_invalid", f"cannot resolve a $ref: {exc}", path=dotted([path, *parts]))
            continue
        if errors:
            report.add("default_invalid", f"the default {_short(sub['default'])} does not satisfy its schema: {errors[0].message}",
                       path=dotted([path, *parts, "default"]))
    return True


# --- Manifest checks --------------------------------------------------------------------------

def cap(name: str) -> int:
    return limit_maximum(name, CAP_SETTINGS)


def check_json_value(manifest, report: Report) -> bool:
    """The manifest is JSON the platform can hold: nesting at most JUNCTION_JSON_MAX_DEPTH
    (deeper would exhaust the recursion of the checks that follow), finite numbers, strings
    that are text, and at most JUNCTION_MANIFEST_MAX_BYTES as JSON text. Checked before
    anything else looks inside, for manifests that did not come through manifest.json (the
    console, versions stored before these rules)."""
    try:
        jsonvalues.check_value(manifest)
    except jsonvalues.JSONRefused as exc:
        report.add(*json_refusal(exc), file="manifest.json")
        return False
    size = len(json.dumps(manifest, ensure_ascii=False).encode())
    if size > cap("bytes"):
        report.add(*size_refusal(size), file="manifest.json")
        return False
    return True


def json_refusal(exc: jsonvalues.JSONRefused) -> tuple[str, str]:
    """(code, message) of a manifest that is not JSON the platform accepts."""
    if exc.code == "json_too_deep":
        return "manifest_too_deep", (f"the manifest is {exc.message}; at most {jsonvalues.max_depth()} are allowed "
                                     "(JUNCTION_JSON_MAX_DEPTH)")
    return "manifest_json", f"manifest.json is not valid JSON: {exc.message}"


def size_refusal(size: int) -> tuple[str, str]:
    return "manifest_too_large", (f"the manifest is {size:,} bytes of JSON; at most {cap('bytes'):,} are allowed "
                                  "(JUNCTION_MANIFEST_MAX_BYTES)")


def check_caps(manifest: dict, report: Report) -> bool:
    """How many handlers and timers the manifest declares, against the platform's caps
    (what one install may put on the scheduler). The install service applies the same
    check to versions published before a cap was lowered. True when within the caps."""
    handlers = manifest.get("handlers")
    if not isinstance(handlers, dict):
        return True
    within = True
    if len(handlers) > cap("handlers"):
        report.add("manifest_too_many_handlers", f"{len(handlers):,} handlers are declared; at most {cap('handlers'):,} "
                   "are allowed (JUNCTION_MANIFEST_MAX_HANDLERS)", path="handlers")
        within = False
    timers = sum(1 for spec in handlers.values() if isinstance(spec, dict) and spec.get("type") == "timer")
    if timers > cap("timers"):
        report.add("manifest_too_many_timers", f"{timers:,} timers are declared; at most {cap('timers'):,} are allowed "
                   "(JUNCTION_MANIFEST_MAX_TIMERS)", path="handlers")
        within = False
    return within


def check_manifest(manifest, report: Report) -> bool:
    """Everything about the manifest that needs no code: its size and nesting, the JSON
    Schema, the caps, embedded schemas, schedules, lifecycle moments and limits. Returns
    False when the manifest cannot be looked into (not an object, too deep, too large)."""
    if not isinstance(manifest, dict):
        report.add("manifest_json", "manifest.json must hold a JSON object", path=None)
        return False
    if not check_json_value(manifest, report):
        return False
    broken = _schema_errors(manifest, report)

    config = manifest.get("configSchema")
    if isinstance(config, dict):
        if check_json_schema(config, "configSchema", report) and "type" in config and config["type"] != "object":
            report.add("config_schema_not_object", "configSchema must describe an object: set \"type\": \"object\"",
                       path="configSchema.type")
    containers = manifest.get("dataContainerSchemas")
    if isinstance(containers, dict):
        for name, schema in containers.items():
            if isinstance(schema, dict):
                check_json_schema(schema, f"dataContainerSchemas.{name}", report)

    handlers = manifest.get("handlers")
    if not isinstance(handlers, dict):
        return True
    if not check_caps(manifest, report):
        return True  # over the caps: checking each of thousands of handlers would only add noise and time
    if not handlers:
        report.add("handlers_empty", "the manifest declares no handlers", path="handlers")
    moments: dict[str, str] = {}
    for name, spec in handlers.items():
        if not isinstance(spec, dict):
            continue
        base = f"handlers.{name}"
        kind = spec.get("type")
        if kind == "timer" and isinstance(spec.get("schedule"), dict) and f"{base}.schedule" not in broken:
            check_schedule(spec["schedule"], f"{base}.schedule", report)
        if kind == "rpc":
            for key in ("inputSchema", "outputSchema"):
                if isinstance(spec.get(key), (dict, bool)):
                    check_json_schema(spec[key], f"{base}.{key}", report)
        if kind == "lifecycle" and isinstance(spec.get("on"), str):
            moment = spec["on"]
            if moment in moments:
                report.add("lifecycle_duplicate", f"handlers {moments[moment]!r} and {name!r} both run on {moment}; keep one",
                           path=f"{base}.on")
            else:
                moments[moment] = name
        limits = spec.get("limits")
        if isinstance(limits, dict):
            for key, value in limits.items():
                if key in LIMIT_SETTINGS and isinstance(value, int) and value > limit_maximum(key):
                    report.add("limit_exceeded", f"{key} is {value:,}, the platform maximum is {limit_maximum(key):,}",
                               path=f"{base}.limits.{key}")
        retry = spec.get("retry")
        if isinstance(retry, dict):
            for key, value in retry.items():
                if key in RETRY_SETTINGS and isinstance(value, (int, float)) and value > limit_maximum(key, RETRY_SETTINGS):
                    report.add("limit_exceeded", f"retry {key} is {value:,}, the platform maximum is "
                               f"{limit_maximum(key, RETRY_SETTINGS):,}", path=f"{base}.retry.{key}")
    return True


def check_schedule(schedule: dict, path: str, report: Report) -> None:
    for problem in schedule_problems(schedule, min_seconds=min_timer_seconds())[1]:
        report.add(problem.code, str(problem), path=f"{path}.{problem.field}" if problem.field else path)
