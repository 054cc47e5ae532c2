"""JSON from outside, held to what the platform can store and run.

Python's ``json`` accepts more than JSON: ``NaN`` and ``Infinity`` (PostgreSQL refuses them in
jsonb), ``1e400`` (becomes ``inf``), ``"\\ud800"`` (a lone surrogate: a ``str`` that cannot be
encoded, so the write or the next read fails), duplicate keys (the last silently wins) and
any nesting its recursion allows — past that it raises ``RecursionError``, a 500 rather than
a refusal. ``loads`` parses strictly and ``check_value`` holds an already-built value (from
code, a form, another parser) to the same rules, so a webhook, a manifest, the console's
JSON fields and ``post_event`` refuse the same things with the same words. Every refusal is a ``JSONRefused``
(a ``ValueError``) with a stable ``code``.
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, NoReturn

from django.conf import settings

__all__ = ["JSONRefused", "check_value", "loads", "max_depth"]


class JSONRefused(ValueError):
    """The text is not JSON the platform accepts. ``code`` is one of ``json_invalid``,
    ``json_too_deep``, ``json_not_finite``, ``json_duplicate_key``, ``json_bad_string``;
    ``message`` reads after "… is not valid JSON: "."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def max_depth() -> int:
    return int(settings.JUNCTION_JSON_MAX_DEPTH)


# A string (closed or running to the end of the text, so a match never fails and the scan
# stays linear) or a bracket. Brackets inside strings are skipped with their string.
_SCAN = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def _check_nesting(text: str, limit: int) -> None:
    """Refuse nesting deeper than ``limit`` before parsing, in one pass over the text: the
    parser recurses per level and would fail past about a thousand."""
    depth = 0
    for match in _SCAN.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > limit:
                raise JSONRefused("json_too_deep", f"nested deeper than {limit} levels")
        elif char in "]}":
            depth -= 1


def _constant(name: str) -> NoReturn:
    raise JSONRefused("json_not_finite", f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONRefused("json_not_finite", f"{text[:40]} is too large for a number")
    return value


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONRefused("json_duplicate_key", f"the key {_short(key)} appears twice in one object")
            seen.add(key)
    return out


def loads(data: str | bytes | bytearray, *, depth: int | None = None) -> Any:
    """Parse ``data`` (text, or bytes in UTF-8/16/32 as JSON allows) strictly: nesting at
    most ``depth`` (default ``JUNCTION_JSON_MAX_DEPTH``), finite numbers only, no duplicate
    keys, strings without lone surrogates or NUL. Raises JSONRefused."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode(json.detect_encoding(data))
        except UnicodeDecodeError as exc:
            raise JSONRefused("json_invalid", f"not UTF-8 text (byte {exc.start})") from None
    limit = max_depth() if depth is None else depth
    _check_nesting(data, limit)
    try:
        value = json.loads(data, parse_constant=_constant, parse_float=_finite, object_pairs_hook=_unique)
    except JSONRefused:
        raise
    except RecursionError:  # cannot happen past _check_nesting; kept as the last guard
        raise JSONRefused("json_too_deep", f"nested deeper than {limit} levels") from None
    except ValueError as exc:  # JSONDecodeError, or an integer of more digits than Python converts
        raise JSONRefused("json_invalid", str(exc)) from None
    check_value(value, depth=limit)
    return value


def check_value(value: Any, *, depth: int | None = None) -> None:
    """Hold a built value to the rules of ``loads``: nesting, finite floats, strings (keys
    too) without lone surrogates or NUL — U+0000, which PostgreSQL cannot store in jsonb.
    Iterative, so a hostile depth cannot exhaust the stack. Raises JSONRefused naming where."""
    limit = max_depth() if depth is None else depth
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, level = stack.pop()
        if isinstance(item, str):
            _check_string(item, where)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise JSONRefused("json_not_finite", f"{_at(where)}{item} is not a JSON number")
        elif isinstance(item, (dict, list, tuple)):
            if level >= limit:
                raise JSONRefused("json_too_deep", f"nested deeper than {limit} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_string(key, where, key=True)
                    stack.append((child, f"{where}.{key}" if where else str(key), level + 1))
            else:
                stack.extend((child, f"{where}[{i}]", level + 1) for i, child in enumerate(item))


def _check_string(text: str, where: str, *, key: bool = False) -> None:
    found = _BAD_CHAR.search(text)
    if found is None:
        return
    what = "a key" if key else "a string"
    if found.group() == "\x00":
        raise JSONRefused("json_bad_string", f"{_at(where)}{what} holds U+0000 (NUL), which cannot be stored")
    raise JSONRefused("json_bad_string", f"{_at(where)}{what} holds a lone surrogate (\\u{ord(found.group()):04x}), "
                      "which is not text")


def _at(where: str) -> str:
    return f"at {where}: " if where else ""


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
