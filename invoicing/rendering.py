"""One template, two renderings: the full page, or one named block of it for an HTMX request."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template
from flask_htmx.responses import HTMXResponseClientRedirect
from jinja2_fragments.flask import render_block
from werkzeug.wrappers import Response

from invoicing.extensions import htmx


def wants_fragment() -> bool:
    """An HTMX request that swaps part of a page; boosted links and history restores want the whole page."""
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def render(template: str, block: str | None = None, **context: Any) -> str:
    if block is not None and wants_fragment():
        return str(render_block(template, block, **context))
    return render_template(template, **context)


def go(url: str) -> Response:
    """Send the browser to `url` after a POST: a 303, or for an HTMX request a full-page client redirect
    (HX-Redirect; a 303 would only swap the target page into the element)."""
    if htmx:
        return HTMXResponseClientRedirect(url)
    return redirect(url, code=303)
