"""One template, two renderings: the full page, or one named block of it for an HTMX request."""

from __future__ import annotations

from typing import Any

from flask import render_template
from jinja2_fragments.flask import render_block

from invoicing.extensions import htmx


def wants_fragment() -> bool:
    """An HTMX request that swaps part of a page; boosted links and history restores want the whole page."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render(template: str, block: str | None = None, **context: Any) -> str:
    if block is not None and wants_fragment():
        return str(render_block(template, block, **context))
    return render_template(template, **context)
