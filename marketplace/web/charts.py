"""The instance page's chart: runs per hour over the last 24 hours, by outcome, and their
mean duration, drawn as server-rendered SVG (no script, no charting service). Bucketing is
pure (``hour_buckets`` takes rows the view aggregated in one query) so it is tested alone."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..choices import RunStatus

HOURS = 24
OUTCOMES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.QUEUED, RunStatus.RUNNING)


@dataclass
class Hour:
    start: datetime
    counts: dict[str, int] = field(default_factory=dict)
    duration_total: int = 0
    timed: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def mean_ms(self) -> int | None:
        return round(self.duration_total / self.timed) if self.timed else None

    @property
    def pending(self) -> int:
        return self.count(RunStatus.QUEUED) + self.count(RunStatus.RUNNING)

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


def window_start(now: datetime) -> datetime:
    """The start of the oldest of the 24 hours shown: the current hour is the last bar."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)


def hour_buckets(rows: Iterable[dict], now: datetime) -> list[Hour]:
    """One ``Hour`` per hour of the last 24, oldest first, empty hours included.

    ``rows`` are ``{"hour", "status", "n", "duration_sum", "timed"}`` (runs grouped by the
    hour they were created in and their status); rows outside the window are ignored."""
    start = window_start(now)
    hours = [Hour(start=start + timedelta(hours=i)) for i in range(HOURS)]
    for row in rows:
        index = int((row["hour"] - start).total_seconds() // 3600)
        if not 0 <= index < HOURS:
            continue
        hour = hours[index]
        hour.counts[row["status"]] = hour.counts.get(row["status"], 0) + row["n"]
        hour.duration_total += row.get("duration_sum") or 0
        hour.timed += row.get("timed") or 0
    return hours


@dataclass
class Bar:
    x: float
    segments: list[tuple[str, float, float, int]]  # status, y, height, count
    label: str
    duration_x: float
    duration_y: float | None


@dataclass
class Chart:
    hours: list[Hour]
    bars: list[Bar]
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    bar_width: float
    max_count: int
    max_ms: int
    duration_points: str
    total: int


def build_chart(hours: list[Hour], *, width: int = 720, height: int = 220) -> Chart:
    """Geometry for the template: stacked bars of counts (left scale) and a line of mean
    durations (right scale) over the same 24 slots."""
    plot_top, plot_bottom, left, right = 16, height - 28, 36, width - 44
    slot = (right - left) / HOURS
    max_count = max((h.total for h in hours), default=0) or 1
    max_ms = max((h.mean_ms or 0 for h in hours), default=0) or 1
    span = plot_bottom - plot_top
    bars, points = [], []
    for i, hour in enumerate(hours):
        x = left + i * slot + slot * 0.15
        y = float(plot_bottom)
        segments = []
        for status in OUTCOMES:
            n = hour.count(status)
            if n:
                h = span * n / max_count
                y -= h
                segments.append((str(status), round(y, 1), round(h, 1), n))
        duration_x, duration_y = round(x + slot * 0.35, 1), None
        if hour.mean_ms is not None:
            duration_y = round(plot_bottom - span * hour.mean_ms / max_ms, 1)
            points.append(f"{duration_x},{duration_y}")
        bars.append(Bar(x=round(x, 1), segments=segments, label=hour.start.strftime("%H"), duration_x=duration_x,
                        duration_y=duration_y))
    return Chart(
        hours=hours, bars=bars, width=width, height=height, plot_top=plot_top, plot_bottom=plot_bottom,
        bar_width=round(slot * 0.7, 1), max_count=max_count, max_ms=max_ms, duration_points=" ".join(points),
        total=sum(h.total for h in hours),
    )
