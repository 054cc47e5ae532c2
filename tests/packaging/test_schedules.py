"""Schedule parsing shared with the runtime's scheduler."""
from __future__ import annotations

import pytest

from marketplace.packaging.schedules import (
    cron_min_interval,
    parse_every,
    schedule_interval,
    validate_cron,
    validate_timezone,
)


@pytest.mark.parametrize("text, seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("1d", 86400), ("1h30m", 5400), (" 2M ", 120)])
def test_every_durations(text, seconds):
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "0s", "1.5h", "-5m", 30, None])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_every(text)


@pytest.mark.parametrize("expression", ["* * * * *", "0 2 * * *", "*/15 9-17 * * mon-fri", "0 0 1 jan *"])
def test_five_field_cron(expression):
    validate_cron(expression)


@pytest.mark.parametrize("expression", ["* * * *", "* * * * * *", "61 * * * *", "every day", ""])
def test_bad_cron(expression):
    with pytest.raises(ValueError):
        validate_cron(expression)


def test_timezones():
    assert str(validate_timezone("Europe/Berlin")) == "Europe/Berlin"
    for name in ("Mars/Base", "../etc/passwd", "", "/etc/localtime"):
        with pytest.raises(ValueError):
            validate_timezone(name)


def test_cron_intervals():
    assert cron_min_interval("*/5 * * * *") == 300
    assert cron_min_interval("0,1 * * * *") == 60
    assert schedule_interval({"cron": "0 2 * * *", "timezone": "UTC"}) == 86400
    assert schedule_interval({"every": "10m"}) == 600
    with pytest.raises(ValueError):
        schedule_interval({"every": "1m", "cron": "* * * * *"})
