"""Charts for the reports page: inline SVG made on the server, no script, no library.

The Content-Security-Policy allows no inline style, so the SVG carries only
geometry and presentation attributes; colours come from classes in
``/static/pages.css`` (``.s0`` … ``.s7``: a series' colour as ``currentColor``;
``.bar`` fills with it, ``.line`` and ``.point`` stroke with it).  Every bar
and point has a ``<title>`` (the browser's tooltip) and ``data-`` attributes
with its series, day (or hour) and value, so tests and people can read the figures.

The x axis is days, or the hours of one day (``0`` … ``23``).  Its labels are
thinned out so that, drawn at their largest (a phone), none runs into the next;
a line is broken where a day has no value (no joining segment across it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TypeAlias

from pbx_tracker.web.pages.layout import escape as _e

__all__ = [
    "COLOURS",
    "Series",
    "Slot",
    "label_width",
    "legend",
    "line_chart",
    "nice_ceiling",
    "stacked_bars",
]

COLOURS = 8  # .s0 … .s7 in pages.css
WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 60, 14, 14, 34  # LEFT: at least; wider for long y labels
MAX_X_LABELS = 8
LABEL_GAP = 16  # at least this much room between two x labels, in SVG units
TICKS = 4
AXIS_FONT = 21  # the axis labels' largest font-size in pages.css (phones), in SVG units
CHAR_WIDTH = 0.6  # a digit's width in system-ui fonts, in ems (a narrow space: half)


Slot: TypeAlias = date | int  # a day, or an hour of the day (0 … 23)


@dataclass(slots=True)
class Series:
    """One line or one colour of bars: a value per day or hour (missing: nothing then)."""

    name: str
    values: dict[Slot, float] = field(default_factory=dict)
    colour: int | None = None  # .s0 … .s7; None: its place among the chart's series


def _slot_label(slot: Slot) -> str:
    return f"{slot:02d}:00" if isinstance(slot, int) else f"{slot.day} {slot:%b}"


def _slot_tip(slot: Slot) -> str:
    return f"{slot:02d}:00\u2013{slot + 1:02d}:00" if isinstance(slot, int) else f"{slot:%a %d %b}"


def _slot_data(slot: Slot) -> str:
    return f'data-hour="{slot}"' if isinstance(slot, int) else f'data-day="{slot.isoformat()}"'


def label_step(labels: Sequence[str], room: float) -> int:
    """Every how many slots an x label is drawn: at most ``MAX_X_LABELS``, and far enough
    apart that the widest, at its largest size, does not reach the next (``room``: the
    width of one slot)."""
    if not labels:
        return 1
    widest = max(label_width(text) for text in labels) + LABEL_GAP
    return max(1, math.ceil(len(labels) / MAX_X_LABELS), math.ceil(widest / room))


def nice_ceiling(value: float) -> float:
    """The top of the y axis: ``TICKS`` steps of 1, 2, 2.5 or 5 times a power of ten
    (at least 1), together at least ``value``."""
    wanted = max(1.0, value / TICKS)
    power = 10.0 ** math.floor(math.log10(wanted))
    step = next(s * power for s in (1.0, 2.0, 2.5, 5.0, 10.0) if s * power >= wanted - 1e-9)
    return step * TICKS


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def label_width(text: str) -> float:
    """About how wide ``text`` is drawn as an axis label at its largest, in SVG units."""
    narrow = sum(char in " \u202f\u00a0.," for char in text)
    return (len(text) - narrow / 2) * CHAR_WIDTH * AXIS_FONT


def _frame(
    days: Sequence[Slot], top: float, label: Callable[[float], str], title: str
) -> tuple[list[str], float, float]:
    """The chart's grid, y labels and x labels; the width of one day's (hour's) slot, and
    the left edge of the plot (past the longest y label)."""
    ticks = [(tick, label(top * tick / TICKS)) for tick in range(TICKS + 1)]
    left = max(LEFT, math.ceil(max(label_width(text) for _, text in ticks)) + 14)
    plot_w, plot_h = WIDTH - left - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(1, len(days))
    parts = [
        f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for tick, text in ticks:
        y = TOP + plot_h - plot_h * tick / TICKS
        parts.append(
            f'<line class="grid{" grid-base" if tick == 0 else ""}" x1="{left}" '
            f'x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(text)}</text>"
        )
    labels = [_slot_label(day) for day in days]
    every = label_step(labels, slot)
    for index, text in enumerate(labels):
        if index % every:
            continue
        x = left + slot * (index + 0.5)
        parts.append(
            f'<text class="axis axis-x" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
            f"{_e(text)}</text>"
        )
    return parts, slot, left


def stacked_bars(
    days: Sequence[Slot], series: Sequence[Series], *, title: str, unit: str = "calls"
) -> str:
    """A bar per day (or hour), one coloured part per series (in the order given)."""
    totals = [sum(s.values.get(day, 0) for s in series) for day in days]
    top = nice_ceiling(max(totals, default=0))
    parts, slot, left = _frame(days, top, _number, title)
    plot_h = HEIGHT - TOP - BOTTOM
    bar_w = max(1.0, min(36.0, slot * 0.72))
    for index, day in enumerate(days):
        x = left + slot * index + (slot - bar_w) / 2
        base = float(TOP + plot_h)
        for number, one in enumerate(series):
            value = one.values.get(day, 0)
            number = number if one.colour is None else one.colour
            if value <= 0:
                continue
            height = plot_h * value / top
            base -= height
            tip = f"{one.name}, {_slot_tip(day)}: {_number(value)} {unit}"
            parts.append(
                f'<rect class="bar s{number % COLOURS}" x="{x:.1f}" y="{base:.1f}" '
                f'width="{bar_w:.1f}" height="{height:.1f}" data-series="{_e(one.name)}" '
                f'{_slot_data(day)} data-value="{_number(value)}">'
                f"<title>{_e(tip)}</title></rect>"
            )
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    days: Sequence[Slot],
    series: Sequence[Series],
    *,
    title: str,
    label: Callable[[float], str],
) -> str:
    """A line per series through its days' values, broken where a day has none (a lone
    day is a point)."""
    values = [v for one in series for v in one.values.values()]
    top = nice_ceiling(max(values, default=0))
    parts, slot, left = _frame(days, top, label, title)
    plot_h = HEIGHT - TOP - BOTTOM
    place = {day: index for index, day in enumerate(days)}
    for number, one in enumerate(series):
        colour = f"s{(number if one.colour is None else one.colour) % COLOURS}"
        points = [
            (place[day], left + slot * (place[day] + 0.5), TOP + plot_h - plot_h * value / top)
            for day, value in one.values.items()
            if day in place
        ]
        points.sort()
        for run in _runs(points):
            path = " ".join(f"{x:.1f},{y:.1f}" for _, x, y in run)
            parts.append(
                f'<polyline class="line {colour}" fill="none" stroke-width="2.5" '
                f'stroke-linejoin="round" data-series="{_e(one.name)}" points="{path}"/>'
            )
        for index, x, y in points:
            day = days[index]
            value = one.values[day]
            tip = f"{one.name}, {_slot_tip(day)}: {value:.2f}"
            parts.append(
                f'<circle class="point {colour}" cx="{x:.1f}" cy="{y:.1f}" r="4" '
                f'stroke-width="2" data-series="{_e(one.name)}" {_slot_data(day)} '
                f'data-value="{value:.2f}"><title>{_e(tip)}</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _runs(points: list[tuple[int, float, float]]) -> list[list[tuple[int, float, float]]]:
    """The points in runs of days next to each other, two points or more each: a line is
    drawn through each run, none across a day without a value."""
    runs: list[list[tuple[int, float, float]]] = []
    for point in points:
        if runs and runs[-1][-1][0] == point[0] - 1:
            runs[-1].append(point)
        else:
            runs.append([point])
    return [run for run in runs if len(run) > 1]


def legend(names: Sequence[str], colours: Sequence[int] | None = None) -> str:
    """The series' names with their colours (``colours``: else their places), as an HTML
    list under a chart."""
    shown = list(colours) if colours is not None else list(range(len(names)))
    items = "".join(
        f'<li><span class="swatch s{number % COLOURS}" aria-hidden="true"></span>{_e(name)}</li>'
        for number, name in zip(shown, names, strict=True)
    )
    return f'<ul class="legend">{items}</ul>'
