"""Jinja filters and globals: money and dates are formatted here, once."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from flask import Flask, current_app, g, has_request_context
from flask_login import current_user
from markupsafe import Markup, escape

from invoicing.money import format_money, format_plain


def init_app(app: Flask) -> None:
    app.jinja_env.filters["money"] = lambda minor, currency: format_money(int(minor or 0), currency)
    app.jinja_env.filters["plain_money"] = lambda minor, currency: format_plain(int(minor or 0), currency)
    app.jinja_env.filters["date"] = _date
    app.jinja_env.filters["datetime"] = _datetime
    app.jinja_env.filters["paragraphs"] = paragraphs
    app.jinja_env.globals["now_utc"] = lambda: datetime.now(UTC)
    app.jinja_env.globals["payments_mode"] = _payments_mode
    app.jinja_env.add_extension("jinja2.ext.do")


def paragraphs(text: str, style: str = "margin:0 0 12px;") -> Markup:
    """Staff's plain text as HTML: escaped, a blank line starts a paragraph, a line break stays one."""
    blocks = [block.strip() for block in text.replace("\r\n", "\n").split("\n\n") if block.strip()]
    opening = Markup('<p style="{}">').format(style) if style else Markup("<p>")
    return Markup("\n").join(
        opening + Markup("<br>\n").join(escape(line) for line in block.split("\n")) + Markup("</p>") for block in blocks
    )


def _payments_mode() -> str:
    from invoicing.gateways import payments_mode

    return payments_mode(current_app.config)


def _date(value: date | str | None) -> str:
    if isinstance(value, str):  # an ISO date or moment kept in an audit event's details
        value = date.fromisoformat(value[:10]) if value else None
    return value.strftime("%b %-d, %Y") if value else ""


def _datetime(value: datetime | None, tz: str | None = None) -> str:
    """A moment as people read it, everywhere (pages and emails): in the organization's time zone and labelled
    with its abbreviation, "1 Dec 2026, 14:05 CET". Without `tz`, the zone of the viewer's organization."""
    if value is None:
        return ""
    local = value.astimezone(ZoneInfo(tz or _viewer_zone()))
    return f"{local.day} {local:%b %Y, %H:%M %Z}"


def _viewer_zone() -> str:
    """The zone of the organization the signed-in user works in (or a superadmin switched to); UTC, labelled,
    when that is every organization."""
    if not has_request_context():
        return "UTC"
    organization = g.get("acting_organization") or getattr(current_user, "organization", None)
    return organization.timezone if organization is not None else "UTC"


