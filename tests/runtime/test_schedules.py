"""Parsing schedules and computing slots: every-periods with per-timer offsets, five-field
cron in an IANA time zone, through DST changes (Europe/Berlin, America/New_York)."""
from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from marketplace.packaging.manifest import check_schedule
from marketplace.packaging.report import Report
from runtime.schedules import Schedule, every_offset, next_cron, next_every, parse_schedule

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def walk(expr: str, tz: str, start: datetime, n: int) -> list[datetime]:
    out, t = [], start
    for _ in range(n):
        t = next_cron(expr, tz, t)
        out.append(t)
    return out


def local(instants, zone) -> list[str]:
    return [t.astimezone(zone).strftime("%m-%d %H:%M %Z") for t in instants]


# --- every -------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400)])
def test_every_durations(text, seconds):
    assert parse_schedule({"every": text}).every_seconds == seconds


@pytest.mark.parametrize("text", ["0s", "5x", "", "m", "1.5m", "32d", True, None, -5, 45])
def test_bad_every_durations_are_refused(text):
    with pytest.raises(ValueError):
        parse_schedule({"every": text})


def test_every_below_the_platform_minimum_is_refused(settings):
    settings.JUNCTION_MIN_TIMER_SECONDS = 20
    with pytest.raises(ValueError, match="platform minimum of 20 seconds"):
        parse_schedule({"every": "15s"})


def test_cron_more_often_than_the_platform_minimum_is_refused_as_validation_refuses_it(settings):
    """One parser, one set of limits: the scheduler used to accept what validation refused."""
    settings.JUNCTION_MIN_TIMER_SECONDS = 300
    with pytest.raises(ValueError, match="platform minimum of 300 seconds"):
        parse_schedule({"cron": "*/2 * * * *"})
    assert parse_schedule({"cron": "*/5 * * * *"}).cron == "*/5 * * * *"


@pytest.mark.parametrize("spec", [
    {"every": "5m"}, {"every": "5s"}, {"every": "32d"}, {"every": "31d"}, {"every": "1x"},
    {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, {"every": "5m", "timezone": "Europe/Berlin"},
    {"cron": "*/2 * * * *"}, {"cron": "61 * * * *"}, {"every": "5m", "cron": "* * * * *"}, {},
])
def test_the_scheduler_accepts_exactly_what_validation_accepts(settings, spec):
    settings.JUNCTION_MIN_TIMER_SECONDS = 180
    report = Report()
    check_schedule(spec, "handlers.h.schedule", report)
    try:
        parse_schedule(spec)
    except ValueError as exc:
        assert report.codes(), f"validation accepts {spec}, the scheduler refuses it: {exc}"
    else:
        assert not report.codes(), f"validation refuses {spec} ({report.codes()}), the scheduler accepts it"


def test_every_slots_are_on_the_timers_own_grid_and_strictly_after():
    assert next_every(60, utc(2026, 1, 1, 0, 0, 30), offset=10) == utc(2026, 1, 1, 0, 1, 10)
    assert next_every(60, utc(2026, 1, 1, 0, 1, 10), offset=10) == utc(2026, 1, 1, 0, 2, 10)
    assert next_every(60, utc(2026, 1, 1, 0, 1, 9, 999999), offset=10) == utc(2026, 1, 1, 0, 1, 10)
    assert next_every(300, utc(2026, 1, 1, 0, 0, 0)) == utc(2026, 1, 1, 0, 5)


def test_offsets_spread_timers_over_the_period():
    """10,000 one-minute timers installed together do not all fire in the same second."""
    offsets = Counter(every_offset(instance_id, "sync", 60) for instance_id in range(1, 10_001))
    assert len(offsets) == 60
    assert max(offsets.values()) < 3 * 10_000 / 60
    assert every_offset(7, "sync", 60) == every_offset(7, "sync", 60)  # stable across calls


def test_every_is_daylight_saving_blind():
    """A period is real elapsed time: across Berlin's spring-forward it stays 1 h apart."""
    slots = [utc(2026, 3, 29, 0, 0)]
    for _ in range(3):
        slots.append(next_every(3600, slots[-1]))
    assert [b - a for a, b in zip(slots, slots[1:])] == [timedelta(hours=1)] * 3
    assert local(slots, BERLIN) == ["03-29 01:00 CET", "03-29 03:00 CEST", "03-29 04:00 CEST", "03-29 05:00 CEST"]


# --- parse_schedule ----------------------------------------------------------------------

def test_schedules_parse():
    assert parse_schedule({"every": "5m"}) == Schedule(every_seconds=300)
    assert parse_schedule({"cron": "0  2 * * *"}) == Schedule(cron="0 2 * * *", timezone="UTC")
    assert parse_schedule({"cron": "0 2 * * *", "timezone": "Europe/Berlin"}).timezone == "Europe/Berlin"


@pytest.mark.parametrize("spec", [
    None, "5m", {}, {"every": "5m", "cron": "* * * * *"}, {"cron": "0 0 * * * *"}, {"cron": "61 * * * *"},
    {"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, {"cron": "0 2 * * *", "timezone": "../../etc/passwd"},
    {"cron": 5},
])
def test_bad_schedules_are_refused(spec):
    with pytest.raises(ValueError):
        parse_schedule(spec)


# --- cron ----------------------------------------------------------------------------------

def test_cron_in_utc():
    assert walk("0 2 * * *", "UTC", utc(2026, 1, 1, 2, 0), 2) == [utc(2026, 1, 2, 2), utc(2026, 1, 3, 2)]
    assert next_cron("*/15 * * * *", "UTC", utc(2026, 1, 1, 0, 7, 12)) == utc(2026, 1, 1, 0, 15)


def test_berlin_spring_forward_daily_job_in_the_missing_hour_runs_once_after_the_jump():
    """02:30 does not exist on 2026-03-29 in Berlin: the job runs at 03:30 CEST, once."""
    runs = walk("30 2 * * *", "Europe/Berlin", utc(2026, 3, 27, 12), 4)
    assert local(runs, BERLIN) == ["03-28 02:30 CET", "03-29 03:30 CEST", "03-30 02:30 CEST", "03-31 02:30 CEST"]


def test_berlin_spring_forward_interval_job_keeps_its_rhythm():
    runs = walk("*/30 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 10), 4)
    assert local(runs, BERLIN) == ["03-29 01:30 CET", "03-29 03:00 CEST", "03-29 03:30 CEST", "03-29 04:00 CEST"]
    assert [b - a for a, b in zip(runs, runs[1:])] == [timedelta(minutes=30)] * 3


def test_berlin_fall_back_daily_job_in_the_repeated_hour_runs_once():
    runs = walk("30 2 * * *", "Europe/Berlin", utc(2026, 10, 23, 12), 4)
    assert local(runs, BERLIN) == ["10-24 02:30 CEST", "10-25 02:30 CEST", "10-26 02:30 CET", "10-27 02:30 CET"]
    assert runs[2] - runs[1] == timedelta(hours=25)


def test_berlin_fall_back_interval_job_runs_through_both_passes_of_the_repeated_hour():
    runs = walk("*/30 * * * *", "Europe/Berlin", utc(2026, 10, 24, 23, 10), 6)
    assert local(runs, BERLIN) == [
        "10-25 01:30 CEST", "10-25 02:00 CEST", "10-25 02:30 CEST", "10-25 02:00 CET", "10-25 02:30 CET", "10-25 03:00 CET",
    ]
    assert [b - a for a, b in zip(runs, runs[1:])] == [timedelta(minutes=30)] * 5


def test_new_york_weekday_job_follows_the_wall_clock_across_dst():
    runs = walk("0 9 * * 1-5", "America/New_York", utc(2026, 3, 6, 12), 3)
    assert runs == [utc(2026, 3, 6, 14), utc(2026, 3, 9, 13), utc(2026, 3, 10, 13)]
    runs = walk("0 9 * * 1-5", "America/New_York", utc(2026, 10, 30, 12), 2)
    assert runs == [utc(2026, 10, 30, 13), utc(2026, 11, 2, 14)]


def test_new_york_fall_back_repeated_1_30_runs_once():
    runs = walk("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 3)
    assert local(runs, NEW_YORK) == ["11-01 01:30 EDT", "11-02 01:30 EST", "11-03 01:30 EST"]


def test_new_york_spring_forward_missing_2_30_runs_at_3_30():
    runs = walk("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), 3)
    assert local(runs, NEW_YORK) == ["03-08 03:30 EDT", "03-09 02:30 EDT", "03-10 02:30 EDT"]


# Each zone's 2026 clock changes (Lord Howe moves by 30 minutes).
TRANSITIONS = {
    "Europe/Berlin": [utc(2026, 3, 29), utc(2026, 10, 25)],
    "America/New_York": [utc(2026, 3, 8), utc(2026, 11, 1)],
    "Australia/Lord_Howe": [utc(2026, 4, 4), utc(2026, 10, 3)],
}


@pytest.mark.parametrize("expr", ["*/7 * * * *", "30 2 * * *", "0 */3 * * *", "15 1-3 * * 0", "*/20 2 * * *"])
@pytest.mark.parametrize("tz", sorted(TRANSITIONS))
def test_slots_strictly_increase_through_clock_changes(expr, tz):
    """Whatever the expression and zone, every slot is later than the one before and no
    slot comes twice: the dispatcher's idempotency key per (schedule, slot) relies on it."""
    for change in TRANSITIONS[tz]:
        t, end, seen = change - timedelta(days=2), change + timedelta(days=2), set()
        while t < end:
            nxt = next_cron(expr, tz, t)
            assert nxt > t and nxt not in seen
            assert nxt - t <= timedelta(days=7)  # and none is lost in a gap
            seen.add(nxt)
            t = nxt


def test_a_cron_that_never_fires_is_an_error():
    with pytest.raises(ValueError):
        next_cron("0 0 31 2 *", "UTC", utc(2026, 1, 1))
