"""Jinja filters and globals: money and dates are formatted here, once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app

from invoicing.money import format_money, format_plain


def init_app(app: Flask) -> None:
    app.jinja_env.filters["money"] = lambda minor, currency: format_money(int(minor or 0), currency)
    app.jinja_env.filters["plain_money"] = lambda minor, currency: format_plain(int(minor or 0), currency)
    app.jinja_env.filters["date"] = _date
    app.jinja_env.filters["datetime"] = _datetime
    app.jinja_env.globals["now_utc"] = lambda: datetime.now(UTC)
    app.jinja_env.globals["payments_mode"] = _payments_mode
    app.jinja_env.add_extension("jinja2.ext.do")


def _payments_mode() -> str:
    from invoicing.gateways import payments_mode

    return payments_mode(current_app.config)


def _date(value: date | None) -> str:
    return value.strftime("%b %-d, %Y") if value else ""


def _datetime(value: datetime | None, tz: str = "UTC") -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(tz)).strftime("%b %-d, %Y %H:%M")


