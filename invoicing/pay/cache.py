"""The pay page, fast: its rendering kept per process, its opens counted off the response's path.

A page is rendered once per `paylinks.Head.version` (read with the token in one statement on every request, so
a payment, refund, void or edit made by any process shows at once) and kept under the invoice id. Nothing in it
is the visitor's own: its form's CSRF token is the link's (paylinks.form_key), so no session is made either.
Pages with flashed messages (the visitor's session) are rendered as before.

Opens are counted in memory and written by a thread of this process every PAY_VIEW_FLUSH_SECONDS (one
transaction per invoice per tick: the first open marks it viewed with its own time and audit event), and at
exit; 0 writes each open in its request.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

from flask import Flask, current_app, session

from invoicing.extensions import db
from invoicing.services import NotFound
from invoicing.services.checkout import record_view
from invoicing.services.paylinks import Head

log = logging.getLogger(__name__)

PAGES = 4096  # invoices kept per process (about 5 KB each)


class PageCache:
    """The latest rendering of each invoice's pay page, least recently used out first."""

    def __init__(self, size: int = PAGES):
        self.size = size
        self._pages: OrderedDict[int, tuple[tuple[object, ...], str]] = OrderedDict()
        self._lock = threading.Lock()

    def page(self, head: Head, render: Callable[[], str]) -> str:
        with self._lock:
            kept = self._pages.get(head.invoice_id)
            if kept is not None and kept[0] == head.version:
                self._pages.move_to_end(head.invoice_id)
                return kept[1]
        html = render()  # outside the lock: a slow render holds up no other page
        with self._lock:
            self._pages[head.invoice_id] = (head.version, html)
            self._pages.move_to_end(head.invoice_id)
            while len(self._pages) > self.size:
                self._pages.popitem(last=False)
        return html

    def clear(self) -> None:
        with self._lock:
            self._pages.clear()


def serve(head: Head, render: Callable[[], str]) -> str:
    """The page of `head` for this request: the kept one, or `render()`, kept."""
    if session.get("_flashes"):
        return render()
    return _state(current_app).pages.page(head, render)


class ViewCounter:
    """Opens per invoice (count, time of the first) waiting to be written; one writer thread per process."""

    def __init__(self, app: Flask):
        self.app = app
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[int, datetime]] = {}
        self._pid = 0
        atexit.register(self.flush)

    def add(self, invoice_id: int, now: datetime) -> None:
        interval = self.app.config.get("PAY_VIEW_FLUSH_SECONDS", 1)
        if not interval:
            record_view(invoice_id, now=now)
            return
        with self._lock:
            if self._pid != os.getpid():  # first open in this process (or a fork's child): start its writer
                self._pid, self._pending = os.getpid(), {}
                threading.Thread(target=self._run, args=(interval,), name="pay-views", daemon=True).start()
            self._add(invoice_id, 1, now)

    def _add(self, invoice_id: int, count: int, first: datetime) -> None:
        kept = self._pending.get(invoice_id)
        self._pending[invoice_id] = (kept[0] + count, min(kept[1], first)) if kept else (count, first)

    def _run(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            self.flush()

    def flush(self) -> int:
        """Write what is pending; what fails to write stays pending for the next tick. Returns opens written."""
        with self._lock:
            batch, self._pending = self._pending, {}
        written = 0
        if not batch:
            return written
        with self.app.app_context():
            for invoice_id, (count, first) in batch.items():
                try:
                    record_view(invoice_id, now=first, count=count)
                    written += count
                except NotFound:
                    pass  # the invoice is gone (a deleted draft never had a pay page: only tests get here)
                except Exception:  # noqa: BLE001 - the database is away: keep the opens for the next tick
                    log.exception("pay page opens not written; kept for the next try")
                    with self._lock:
                        self._add(invoice_id, count, first)
            db.session.remove()
        return written


class _State:
    def __init__(self, app: Flask):
        self.pages = PageCache()
        self.views = ViewCounter(app)


def init_app(app: Flask) -> None:
    app.extensions["pay_page"] = _State(app)


def _state(app: Flask) -> _State:
    state: _State = app.extensions["pay_page"]
    return state


def count_open(invoice_id: int, now: datetime) -> None:
    _state(current_app).views.add(invoice_id, now)


def flush_opens(app: Flask) -> int:
    """Write the pending opens now (tests, and gunicorn's worker_exit)."""
    state = app.extensions.get("pay_page")
    return state.views.flush() if state is not None else 0
