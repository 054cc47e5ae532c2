"""Parsing timer schedules: ``every`` durations and five-field cron expressions.

Pure functions with no Django or database access, so the runtime's scheduler can reuse them
and agree with validation on what a schedule means.
"""
from __future__ import annotations

import re
import zoneinfo
from datetime import datetime, timezone

from croniter import croniter

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY = re.compile(r"^(?:\d+[smhd])+$")
_PART = re.compile(r"(\d+)([smhd])")


def parse_every(text: str) -> int:
    """Seconds in an ``every`` duration: ``30s``, ``5m``, ``1h``, ``1d`` or a sum such as
    ``1h30m``. Raises ValueError on anything else, and on a zero duration."""
    if not isinstance(text, str):
        raise ValueError(f"a duration is a string such as '30s', '5m' or '1h', got {text!r}")
    compact = text.strip().lower()
    if not _EVERY.match(compact):
        raise ValueError(f"{text!r} is not a duration such as '30s', '5m', '1h' or '1h30m'")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(compact))
    if seconds <= 0:
        raise ValueError(f"{text!r} is a zero duration")
    return seconds


def validate_cron(expression: str) -> None:
    """Raise ValueError unless ``expression`` is a valid five-field cron expression
    (minute hour day-of-month month day-of-week)."""
    if not isinstance(expression, str):
        raise ValueError(f"a cron expression is a string, got {expression!r}")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{expression!r} is not a five-field cron expression (minute hour day month weekday)")
    if not croniter.is_valid(expression):
        raise ValueError(f"{expression!r} is not a valid cron expression")


def validate_timezone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``; ValueError when it is unknown."""
    if not isinstance(name, str) or not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(f"{name!r} is not an IANA time zone name")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name such as 'Europe/Berlin'") from None


def cron_min_interval(expression: str, *, samples: int = 200) -> int:
    """The shortest gap in seconds between successive runs of a (valid) cron expression,
    measured over its next ``samples`` runs from a fixed instant in UTC. Cron's resolution is
    a minute, so the answer is at least 60."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs = croniter(expression, start)
    previous = runs.get_next(float)
    shortest = None
    for _ in range(samples):
        current = runs.get_next(float)
        gap = int(current - previous)
        shortest = gap if shortest is None else min(shortest, gap)
        previous = current
    return shortest or 60


def schedule_interval(schedule: dict) -> int:
    """Seconds between runs (shortest gap for cron). Raises ValueError when the schedule
    does not parse."""
    if not isinstance(schedule, dict):
        raise ValueError("a schedule is an object with 'every' or 'cron'")
    has_every, has_cron = "every" in schedule, "cron" in schedule
    if has_every == has_cron:
        raise ValueError("a schedule has exactly one of 'every' or 'cron'")
    if "timezone" in schedule:
        validate_timezone(schedule["timezone"])
    if has_every:
        return parse_every(schedule["every"])
    validate_cron(schedule["cron"])
    return cron_min_interval(schedule["cron"])
