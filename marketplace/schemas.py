"""JSON Schema (Draft 2020-12) validation whose regular expressions run in linear time.

Schemas come from publishers (``configSchema``, ``dataContainerSchemas``, RPC
``inputSchema``/``outputSchema``) and the values checked against them from anyone. jsonschema
matches ``pattern`` with Python's backtracking ``re``: ``^(a+)+$`` against ``"a" * 29 + "!"``
took 13 s, and each further ``a`` doubles it. Every validation in Junction goes through this
module instead:

- ``pattern``, ``patternProperties`` and ``additionalProperties`` (which reads
  ``patternProperties``) match with RE2 (google-re2), whose time is linear in the text.
  RE2 has no look-around and no back-references (neither is in the subset JSON Schema
  recommends for interoperability); ``check_schema`` refuses a schema whose patterns RE2
  cannot compile, naming the pattern. Its ``\\d``/``\\w`` are ASCII, as in ECMA-262.
- ``unevaluatedProperties`` is refused in a schema that also has ``patternProperties``:
  jsonschema evaluates those in a helper of its own, with ``re``.
- ``format: regex`` only compiles a value (never matches with it), bounded by its size.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import re2
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import SchemaError

if TYPE_CHECKING:
    from jsonschema.protocols import Validator as SchemaValidator

__all__ = ["SchemaError", "Validator", "check_schema", "validator"]

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # a refused pattern is reported by check_schema, not logged by RE2

# Values that are data, not schemas: a "pattern" key inside them is not a regex.
_DATA_KEYWORDS = frozenset({"const", "enum", "default", "examples"})


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re2._Regexp | None:
    """The RE2 program for ``pattern``, or None when RE2 cannot run it."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except (re2.error, TypeError, ValueError):
        return None


def _search(pattern: str, text: str) -> bool | None:
    """Whether ``pattern`` matches anywhere in ``text``; None when RE2 cannot run it."""
    compiled = _compiled(pattern)
    return None if compiled is None else compiled.search(text) is not None


def _unsupported(pattern: str) -> ValidationError:
    return ValidationError(f"the pattern {pattern!r} cannot be checked (look-around and back-references are not supported)")


def _pattern(validator: SchemaValidator, pattern: str, instance: Any, schema: dict) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "string"):
        return
    found = _search(pattern, instance)
    if found is None:
        yield _unsupported(pattern)
    elif not found:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: SchemaValidator, pattern_properties: dict, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in pattern_properties.items():
        if _compiled(pattern) is None:
            yield _unsupported(pattern)
            continue
        for key, value in instance.items():
            if _search(pattern, key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional_properties(
    validator: SchemaValidator, additional: Any, instance: Any, schema: dict
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    properties = schema.get("properties", {})
    patterns = [p for p in schema.get("patternProperties", {}) if _compiled(p) is not None]
    extras = [key for key in instance if key not in properties and not any(_search(p, key) for p in patterns)]
    if validator.is_type(additional, "object"):
        for key in extras:
            yield from validator.descend(instance[key], additional, path=key)
    elif not additional and extras:
        names = ", ".join(repr(key) for key in sorted(extras))
        if "patternProperties" in schema:
            regexes = ", ".join(repr(p) for p in sorted(schema["patternProperties"]))
            yield ValidationError(f"{names} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: {regexes}")
        else:
            yield ValidationError(f"Additional properties are not allowed ({names} {'was' if len(extras) == 1 else 'were'} unexpected)")


Validator = validators.extend(
    Draft202012Validator,
    {"pattern": _pattern, "patternProperties": _pattern_properties, "additionalProperties": _additional_properties},
)


def _walk(schema: Any, depth: int = 0) -> Iterator[dict]:
    """Every subschema (dict) of ``schema``, skipping data keywords."""
    if depth > 200:
        return
    if isinstance(schema, dict):
        yield schema
        for key, value in schema.items():
            if key not in _DATA_KEYWORDS:
                yield from _walk(value, depth + 1)
    elif isinstance(schema, list):
        for value in schema:
            yield from _walk(value, depth + 1)


def check_schema(schema: Any) -> None:
    """Raise ``SchemaError`` unless ``schema`` is valid Draft 2020-12 that this module can
    validate in linear time (see the module docstring)."""
    Validator.check_schema(schema)
    pattern_properties = unevaluated = False
    for sub in _walk(schema):
        patterns = []
        if isinstance(sub.get("pattern"), str):
            patterns.append(sub["pattern"])
        if isinstance(sub.get("patternProperties"), dict):
            pattern_properties = True
            patterns.extend(sub["patternProperties"])
        unevaluated = unevaluated or "unevaluatedProperties" in sub
        for pattern in patterns:
            if _compiled(pattern) is None:
                raise SchemaError(
                    f"the pattern {pattern!r} is not supported: patterns run in linear time (RE2), "
                    "without look-around or back-references"
                )
    if pattern_properties and unevaluated:
        raise SchemaError("unevaluatedProperties cannot be combined with patternProperties")


def validator(schema: Any, *, format_checker: bool = False) -> SchemaValidator:
    """A validator for a schema already checked with ``check_schema``; ``format_checker``
    turns on Draft 2020-12's format assertions."""
    return Validator(schema, format_checker=Validator.FORMAT_CHECKER if format_checker else None)
