"""Server-rendered SVG charts for the reports page and the dashboard: the geometry only (the templates draw
it). Readable without JavaScript, printable, and each bar carries a <title> that browsers show on hover."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from invoicing.money import format_money
from invoicing.services.reports.figures import Month, Share

WIDTH, HEIGHT, AXIS, TOP = 720, 240, 24, 12


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kind: str  # invoiced, collected
    title: str


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    ticks: list[Tick]
    gridlines: list[tuple[float, str]]
    baseline: float


def month_label(first: date) -> str:
    return first.strftime("%b %Y")


def revenue_chart(months: list[Month], currency: str) -> Chart:
    """Invoiced and collected side by side for each month, scaled to the largest of either."""
    top = max([m.invoiced for m in months] + [m.collected for m in months] + [1])
    plot = HEIGHT - AXIS - TOP
    slot = WIDTH / max(len(months), 1)
    bar = max(min(slot * 0.38, 28), 2)
    bars, ticks = [], []
    every = max(1, round(len(months) / 12))
    for i, m in enumerate(months):
        title = f"{month_label(m.first)}: invoiced {format_money(m.invoiced, currency)}, " \
                f"collected {format_money(m.collected, currency)}"
        center = slot * i + slot / 2
        for kind, value, x in (("invoiced", m.invoiced, center - bar), ("collected", m.collected, center)):
            h = plot * value / top
            bars.append(Bar(round(x, 1), round(TOP + plot - h, 1), round(bar, 1), round(h, 1), kind, title))
        if i % every == 0:
            ticks.append(Tick(round(center, 1), m.first.strftime("%b" if len(months) <= 12 else "%b %y")))
    gridlines = [(round(TOP + plot - plot * f, 1), format_money(round(top * f), currency)) for f in (0.5, 1.0)]
    return Chart(WIDTH, HEIGHT, bars, ticks, gridlines, TOP + plot)


@dataclass(frozen=True)
class Spark:
    width: int
    height: int
    points: str
    title: str


def sparkline(months: list[Month], currency: str, width: int = 160, height: int = 36) -> Spark:
    """The dashboard's small line of money collected per month."""
    values = [m.collected for m in months] or [0]
    top = max(values + [1])
    step = width / max(len(values) - 1, 1)
    points = " ".join(f"{round(i * step, 1)},{round(height - 2 - (height - 4) * v / top, 1)}"
                      for i, v in enumerate(values))
    title = "Collected per month: " + ", ".join(f"{month_label(m.first)} {format_money(m.collected, currency)}"
                                                for m in months)
    return Spark(width, height, points, title)


@dataclass(frozen=True)
class ShareBar:
    label: str
    width: float
    title: str


def share_bars(shares: list[Share], currency: str) -> list[ShareBar]:
    return [ShareBar(s.label, float(s.percent), f"{s.label}: {format_money(s.amount, currency)} ({s.percent} %)")
            for s in shares]
