"""Parsing timer schedules: ``every`` durations and five-field cron expressions.

The one parser of a manifest's ``schedule``, with its limits: package validation reports
what ``schedule_problems`` finds, and the runtime's scheduler builds its rows from
``parse_schedule``, so both agree on what a schedule means and what it may be. Pure
functions with no Django or database access: the platform minimum comes in as an argument.
"""
from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime

from croniter import croniter

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_EVERY_SECONDS = 31 * 86400  # a longer period is a mistake rather than a timer
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
    start = datetime(2026, 1, 1, tzinfo=UTC)
    runs = croniter(expression, start)
    previous = runs.get_next(float)
    shortest = None
    for _ in range(samples):
        current = runs.get_next(float)
        gap = int(current - previous)
        shortest = gap if shortest is None else min(shortest, gap)
        previous = current
    return shortest or 60


class ScheduleError(ValueError):
    """A schedule that does not parse or breaks a limit. ``code`` is the validation report's
    code; ``field`` the key at fault (``every``, ``cron``, ``timezone``), None for the whole."""

    def __init__(self, message: str, *, code: str = "schedule_invalid", field: str | None = None):
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Schedule:
    """A parsed ``schedule``: ``every_seconds``, or ``cron`` (fields single-spaced) in
    ``timezone``. A ``timezone`` on an ``every`` schedule is checked and has no effect."""

    every_seconds: int | None = None
    cron: str = ""
    timezone: str = "UTC"


def schedule_problems(spec, *, min_seconds: int) -> tuple[Schedule | None, list[ScheduleError]]:
    """The parsed schedule (None when it does not parse) and every problem found: not
    exactly one of ``every``/``cron``, an unknown time zone, a bad duration or expression,
    a period over 31 days, runs more often than ``min_seconds`` (for cron, measured over
    its next runs, only when the minimum is above cron's own minute)."""
    if not isinstance(spec, dict):
        return None, [ScheduleError("a schedule is an object with 'every' (such as \"5m\") or 'cron' (five fields)")]
    has_every, has_cron = "every" in spec, "cron" in spec
    if has_every == has_cron:
        return None, [ScheduleError("a schedule has exactly one of 'every' (such as \"5m\") or 'cron' (five fields)")]
    problems = []
    zone = "UTC"
    if "timezone" in spec:
        try:
            validate_timezone(spec["timezone"])
            zone = spec["timezone"]
        except ValueError as exc:
            problems.append(ScheduleError(str(exc), code="schedule_timezone_unknown", field="timezone"))
    if has_every:
        try:
            seconds = parse_every(spec["every"])
        except ValueError as exc:
            return None, [*problems, ScheduleError(str(exc), field="every")]
        if seconds > MAX_EVERY_SECONDS:
            problems.append(ScheduleError(f"every {spec['every']} is longer than the maximum of 31 days", field="every"))
        elif seconds < min_seconds:
            problems.append(ScheduleError(f"every {spec['every']} is more often than the platform minimum of "
                                          f"{min_seconds} seconds", code="schedule_too_frequent", field="every"))
        return (None if problems else Schedule(every_seconds=seconds)), problems
    try:
        validate_cron(spec["cron"])
    except ValueError as exc:
        return None, [*problems, ScheduleError(str(exc), field="cron")]
    if min_seconds > 60:  # cron never fires more than once a minute; measure only when it matters
        gap = cron_min_interval(spec["cron"])
        if gap < min_seconds:
            problems.append(ScheduleError(f"cron {spec['cron']!r} runs every {gap} seconds at times, more often than "
                                          f"the platform minimum of {min_seconds} seconds",
                                          code="schedule_too_frequent", field="cron"))
    return (None if problems else Schedule(cron=" ".join(spec["cron"].split()), timezone=zone)), problems


def parse_schedule(spec, *, min_seconds: int) -> Schedule:
    """The parsed schedule; raises the first ScheduleError ``schedule_problems`` finds."""
    schedule, problems = schedule_problems(spec, min_seconds=min_seconds)
    if problems:
        raise problems[0]
    return schedule


def schedule_interval(schedule: dict) -> int:
    """Seconds between runs (shortest gap for cron). Raises ValueError when the schedule
    does not parse."""
    parsed = parse_schedule(schedule, min_seconds=0)
    return parsed.every_seconds or cron_min_interval(parsed.cron)
