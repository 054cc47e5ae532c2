"""The instance page's chart on its own: hour buckets (the window, empty hours, rows outside
it) and the SVG geometry they become."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marketplace.web import charts

NOW = datetime(2026, 11, 30, 14, 37, 12, tzinfo=UTC)
THIS_HOUR = datetime(2026, 11, 30, 14, tzinfo=UTC)


def row(hour, status, n, duration_sum=None, timed=0):
    return {"hour": hour, "status": status, "n": n, "duration_sum": duration_sum, "timed": timed}


def test_an_empty_day_is_24_empty_hours_ending_with_this_one():
    hours = charts.hour_buckets([], NOW)
    assert len(hours) == 24
    assert hours[-1].start == THIS_HOUR and hours[0].start == THIS_HOUR - timedelta(hours=23)
    assert all(h.total == 0 and h.mean_ms is None for h in hours)
    chart = charts.build_chart(hours)
    assert chart.total == 0 and chart.duration_points == "" and all(not b.segments for b in chart.bars)


def test_rows_land_in_their_hour_by_outcome_with_the_mean_duration():
    hours = charts.hour_buckets([
        row(THIS_HOUR, "succeeded", 3, duration_sum=300, timed=3),
        row(THIS_HOUR, "failed", 1, duration_sum=500, timed=1),
        row(THIS_HOUR - timedelta(hours=5), "queued", 2),
    ], NOW)
    assert (hours[-1].count("succeeded"), hours[-1].count("failed"), hours[-1].mean_ms) == (3, 1, 200)
    assert (hours[-6].pending, hours[-6].mean_ms) == (2, None)
    assert sum(h.total for h in hours) == 6


def test_rows_outside_the_window_are_left_out():
    hours = charts.hour_buckets([
        row(THIS_HOUR - timedelta(hours=24), "failed", 9),
        row(THIS_HOUR + timedelta(hours=1), "failed", 9),
    ], NOW)
    assert sum(h.total for h in hours) == 0


def test_bars_stack_to_the_busiest_hours_height():
    hours = charts.hour_buckets([
        row(THIS_HOUR, "succeeded", 2, duration_sum=20, timed=2),
        row(THIS_HOUR, "failed", 2, duration_sum=40, timed=2),
        row(THIS_HOUR - timedelta(hours=1), "succeeded", 1, duration_sum=5, timed=1),
    ], NOW)
    chart = charts.build_chart(hours)
    span = chart.plot_bottom - chart.plot_top
    last = chart.bars[-1]
    assert [s[0] for s in last.segments] == ["succeeded", "failed"]
    assert sum(s[2] for s in last.segments) == span  # the busiest hour fills the plot
    assert chart.bars[-2].segments[0][2] == span / 4
    assert chart.max_ms == 15 and len(chart.duration_points.split()) == 2
    assert last.duration_y == chart.plot_top  # the longest mean is at the top of its scale
