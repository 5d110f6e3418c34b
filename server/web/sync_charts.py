"""Server-rendered SVG charts for the sync dashboard: hour-by-hour bars and lines, laid out
here (pure geometry) and drawn by ``sync/_chart.html``. No script is needed (the pages'
CSP allows none inline); each chart has a title and description for screen readers, a
tooltip per point, and the same figures as a table beneath it. Words, numbers and days are
the reader's (Flask-Babel's locale); hours stay UTC, as the charts say."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from babel.dates import format_skeleton
from flask_babel import format_decimal, get_locale
from flask_babel import gettext as _
from flask_babel import ngettext

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 60, 12, 12, 30


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str  # the tooltip: "14:00–15:00: 12 emails tracked"


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str


@dataclass
class Line:
    name: str
    css: str  # class of the series
    path: str  # SVG path data, broken where there is no value
    points: list[Point] = field(default_factory=list)


@dataclass
class Chart:
    id: str
    title: str
    description: str
    columns: list[str]  # the table's headers: hour, then one per series
    rows: list[list[str]]
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    empty: bool = False

    @property
    def plot(self) -> tuple[int, int, int, int]:
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def _scale(top_value: float) -> float:
    """A round top for the y axis: 1, 2, 5 times a power of ten."""
    if top_value <= 0:
        return 1
    magnitude = 1
    while magnitude * 10 <= top_value:
        magnitude *= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= top_value:
            return step * magnitude
    return 10 * magnitude


def _day(hour: datetime) -> str:
    return format_skeleton("MMMd", hour, locale=get_locale() or "en")


def _slot_label(hour: datetime) -> str:
    return f"{_day(hour)} {hour:%H:00}–{(hour.hour + 1) % 24:02d}:00 UTC"


def _frame(chart: Chart, hours: list[datetime], top: float, unit: str) -> tuple[float, float]:
    left, upper, right, lower = chart.plot
    slot = (right - left) / max(1, len(hours))
    for fraction in (0, 0.5, 1):
        value = top * fraction
        chart.y_ticks.append((lower - (lower - upper) * fraction,
                              format_decimal(value, "#,##0" if value == int(value) else "#,##0.0")
                              + unit))
    for i, hour in enumerate(hours):
        if hour.hour % 6 == 0:
            chart.x_ticks.append((left + slot * (i + 0.5), f"{hour:%H:00}" if hour.hour else
                                  _day(hour)))
    return slot, (lower - upper) / top


def bar_chart(chart_id: str, title: str, description: str, hours: list[datetime],
              values: list[int], column: str, what: Callable[[int], str]) -> Chart:
    """One bar per hour; ``column`` heads the table's figures, ``what(n)`` says one bar
    ("12 emails tracked")."""
    chart = Chart(chart_id, title, description, [_("Hour (UTC)"), column],
                  [[_slot_label(h), format_decimal(v)] for h, v in zip(hours, values)])
    chart.empty = not any(values)
    top = _scale(max(values, default=0))
    slot, per_unit = _frame(chart, hours, top, "")
    left, _upper, _right, lower = chart.plot
    for i, (hour, value) in enumerate(zip(hours, values)):
        height = value * per_unit
        chart.bars.append(Bar(round(left + slot * i + slot * 0.15, 2), round(lower - height, 2),
                              round(slot * 0.7, 2), round(height, 2),
                              f"{_slot_label(hour)}: {what(value)}"))
    return chart


def line_chart(chart_id: str, title: str, description: str, hours: list[datetime],
               series: dict[str, tuple[str, list[int | None]]], unit: str) -> Chart:
    """Lines over the hours; ``series`` maps a name to (css class, values in ``unit``),
    a missing value breaks the line."""
    names = list(series)
    chart = Chart(chart_id, title, description, [_("Hour (UTC)"), *[n for n in names]],
                  [[_slot_label(h), *[_fmt(series[n][1][i], unit) for n in names]]
                   for i, h in enumerate(hours)])
    found = [v for _css, values in series.values() for v in values if v is not None]
    chart.empty = not found
    top = _scale(max(found, default=0))
    slot, per_unit = _frame(chart, hours, top, unit)
    left, _upper, _right, lower = chart.plot
    for name, (css, values) in series.items():
        parts, points, pen_down = [], [], False
        for i, value in enumerate(values):
            if value is None:
                pen_down = False
                continue
            x, y = round(left + slot * (i + 0.5), 2), round(lower - value * per_unit, 2)
            parts.append(f"{'L' if pen_down else 'M'}{x} {y}")
            pen_down = True
            points.append(Point(x, y, f"{_slot_label(hours[i])}: {name} {_fmt(value, unit)}"))
        chart.lines.append(Line(name, css, " ".join(parts), points))
    return chart


def _fmt(value: int | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{format_decimal(value)}{unit}"


def dashboard_charts(data: dict) -> list[Chart]:
    """The dashboard's three charts from ``server.sync.admin.dashboard.hourly``."""
    hours = data["hours"]
    return [
        bar_chart("chart-tracked", _("Email tracked per hour"),
                  _("Emails tracked by server-side synchronization in each of the last 48 "
                    "hours."), hours, data["tracked"], _("Emails tracked"),
                  lambda n: ngettext("%(num)s email tracked", "%(num)s emails tracked", n)),
        line_chart("chart-latency", _("Sync latency per hour"),
                   _("Time from when the sync could first see an email to its tracking: from "
                     "its arrival, or for mail filed into a tracked folder from the sync's "
                     "previous look at that folder (an upper bound: the move itself may have "
                     "come later). The median (p50) and the 95th percentile (p95) of each "
                     "hour, in seconds."),
                   hours, {"p50": ("line-p50", [_seconds(v) for v in data["p50"]]),
                           "p95": ("line-p95", [_seconds(v) for v in data["p95"]])}, " s"),
        bar_chart("chart-failures", _("Failures per hour"),
                  _("Failed mailbox runs and quarantined messages in each of the last 48 hours."),
                  hours, data["failures"], _("Failures"),
                  lambda n: ngettext("%(num)s failure", "%(num)s failures", n)),
    ]


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else round(ms / 1000, 1)
