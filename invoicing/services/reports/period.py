"""The period a report covers: a range of the organization's own days, and the instants that bound it.

A day belongs to the organization's IANA time zone: a card payment at 23:30 in Los Angeles on 31 January is
January's money even though it is 1 February in UTC. Dates (issue, due, a manual payment's "paid on") are
compared as dates; instants (a card payment's success, a refund) against the UTC instants of local midnights.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

PRESETS = {
    "12m": "Last 12 months",
    "month": "This month",
    "last_month": "Last month",
    "quarter": "This quarter",
    "year": "This year",
    "last_year": "Last year",
    "custom": "Custom",
}
DEFAULT_PRESET = "12m"
MAX_DAYS = 5 * 366 + 1  # a custom range up to five years (60 months on the chart)


def local_midnight(day: date, tz: str) -> datetime:
    """The UTC instant at which this local day starts."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(tz)).astimezone(UTC)


def first_of_month(day: date, months_back: int = 0) -> date:
    index = day.year * 12 + day.month - 1 - months_back
    return date(index // 12, index % 12 + 1, 1)


def preset_range(preset: str, today: date) -> tuple[date, date]:
    """(first day, last day) of a named period; every period ends today at the latest."""
    if preset == "month":
        return first_of_month(today), today
    if preset == "last_month":
        start = first_of_month(today, 1)
        return start, first_of_month(today) - timedelta(days=1)
    if preset == "quarter":
        return date(today.year, (today.month - 1) // 3 * 3 + 1, 1), today
    if preset == "year":
        return date(today.year, 1, 1), today
    if preset == "last_year":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    return first_of_month(today, 11), today  # 12m: this month and the eleven before it


@dataclass(frozen=True)
class Period:
    """Local days `start`..`end` (inclusive) in time zone `tz`; `today` is the organization's today."""

    start: date
    end: date
    tz: str
    today: date

    @classmethod
    def of(cls, preset: str, tz: str, now: datetime, start: date | None = None, end: date | None = None) -> Period:
        today = now.astimezone(ZoneInfo(tz)).date()
        if preset == "custom" and start and end:
            return cls(start, end, tz, today)
        first, last = preset_range(preset, today)
        return cls(first, last, tz, today)

    @cached_property
    def start_at(self) -> datetime:
        return local_midnight(self.start, self.tz)

    @cached_property
    def end_before(self) -> datetime:
        """The first instant after the period (the next day's local midnight)."""
        return local_midnight(self.end + timedelta(days=1), self.tz)

    @cached_property
    def months(self) -> list[date]:
        """First day of each calendar month the period touches, oldest first."""
        months, month = [], first_of_month(self.start)
        while month <= self.end:
            months.append(month)
            month = first_of_month(month + timedelta(days=32))
        return months

    def month_starts_at(self) -> list[datetime]:
        """The UTC instant each month after the first starts (the bucket edges for instants)."""
        return [local_midnight(m, self.tz) for m in self.months[1:]]

    def with_range(self, start: date, end: date) -> Period:
        return replace(self, start=start, end=end)


@dataclass(frozen=True)
class ReportFilters:
    """What a report covers; `params()` gives the query string (filters live in the URL)."""

    preset: str = DEFAULT_PRESET
    date_from: date | None = None
    date_to: date | None = None
    currency: str | None = None
    client_id: int | None = None

    def period(self, tz: str, now: datetime) -> Period:
        return Period.of(self.preset, tz, now, self.date_from, self.date_to)

    def params(self, **changes: object) -> dict[str, str]:
        f = replace(self, **changes)  # type: ignore[arg-type]
        custom = f.preset == "custom"
        values = {
            "period": f.preset if f.preset != DEFAULT_PRESET else None,
            "from": f.date_from.isoformat() if custom and f.date_from else None,
            "to": f.date_to.isoformat() if custom and f.date_to else None,
            "currency": f.currency, "client": f.client_id,
        }
        return {k: str(v) for k, v in values.items() if v is not None}


def _date_arg(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def parse_filters(args: Mapping[str, str]) -> ReportFilters:
    """The reports page's filters; a custom range needs both ends (swapped if reversed, at most five years),
    anything else falls back to the default period."""
    preset = args.get("period") or DEFAULT_PRESET
    start, end = _date_arg(args.get("from")), _date_arg(args.get("to"))
    if preset == "custom" and start and end:
        start, end = min(start, end), max(start, end)
        if (end - start).days > MAX_DAYS:
            start = end - timedelta(days=MAX_DAYS)
    elif preset == "custom" or preset not in PRESETS:
        preset, start, end = DEFAULT_PRESET, None, None
    currency = (args.get("currency") or "").strip().upper()
    client = args.get("client", "")
    return ReportFilters(preset=preset, date_from=start if preset == "custom" else None,
                         date_to=end if preset == "custom" else None,
                         currency=currency if re.fullmatch(r"[A-Z]{3}", currency) else None,
                         client_id=int(client) if client.isdigit() else None)


def offsets(tz: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) over [start, end): [(from instant, offset), ...], first from `start`.

    Lets a database without time zone data (SQLite) turn an instant into the local day exactly, across
    daylight-saving changes: one CASE over these few edges instead of a conversion per row in Python.
    """
    zone = ZoneInfo(tz)

    def offset(at: datetime) -> int:
        delta = at.astimezone(zone).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    edges = [(start, offset(start))]
    at = start
    while at < end:
        step = min(at + timedelta(days=1), end)
        if offset(step) != edges[-1][1]:
            low, high = at, step  # the change is in (low, high]: narrow it to the second
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset(middle) == edges[-1][1] else (low, middle)
            edges.append((high.replace(microsecond=0), offset(high)))
        at = step
    return edges
