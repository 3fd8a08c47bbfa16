"""Data migrations, run on a database of their own at the revision before them (same engine as the suite)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import create_engine, make_url, text

from invoicing import create_app
from invoicing.extensions import db
from invoicing.services.invoices import void_invoice
from invoicing.services.payments import apply_payment
from tests.conftest import FAST_HASH, NOW, SYSTEM, make_client, make_invoice, make_org


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database of its own: a SQLite file, or (TEST_DATABASE_URL set) a new PostgreSQL database beside it."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server = make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"{server.database}_migrations"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _app(url: str):  # type: ignore[no-untyped-def]
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "MAIL_SERVER": None,
                       "SECRET_KEY": "test-secret-key-" + "x" * 32, "PASSWORD_HASH_METHOD": FAST_HASH})


def _store_event(event_id: str, obj: dict[str, object]) -> None:
    payload = json.dumps({"id": event_id, "type": "some.event", "data": {"object": obj}})
    db.session.execute(text(
        "INSERT INTO webhook_event (provider, event_id, type, payload, status, attempts, received_at) "
        "VALUES ('stripe', :id, 'some.event', :payload, 'processed', 1, :now)"), {"id": event_id, "payload": payload,
                                                                                "now": NOW})
    db.session.commit()


def test_it_files_the_webhook_events_it_finds_under_their_invoice_and_organization(empty_database: str) -> None:
    with _app(empty_database).app_context():
        upgrade()  # rows made by today's services, then the schema taken back to before the migration
        org = make_org("Old Org")
        invoice = make_invoice(make_client(org, "Old client"), status="open")
        apply_payment(invoice.id, amount=1000, currency="USD", method="card", status="succeeded", actor=SYSTEM,
                      now=NOW, payment_intent_id="pi_old", charge_id="ch_old")
        invoice_id, org_id = invoice.id, org.id
        db.session.remove()
        downgrade(revision="0005")
        _store_event("evt_meta", {"object": "checkout.session", "metadata": {"invoice_id": str(invoice_id)}})
        _store_event("evt_charge", {"object": "dispute", "charge": "ch_old"})
        _store_event("evt_other", {"object": "customer", "id": "cus_1"})
        _store_event("evt_garbled", {"object": "charge", "payment_intent": "pi_nobody_knows"})
        _store_event("evt_foreign", {"object": "checkout.session",
                                     "metadata": {"invoice_id": str(invoice_id), "invoice_public_id": "f" * 32}})

        upgrade(revision="0006")

        rows = db.session.execute(text(
            "SELECT event_id, invoice_id, organization_id FROM webhook_event ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("evt_meta", invoice_id, org_id), ("evt_charge", invoice_id, org_id),
                                            ("evt_other", None, None), ("evt_garbled", None, None),
                                            ("evt_foreign", None, None)]
        db.session.remove()
        db.engine.dispose()


def test_it_opens_cases_for_flagged_money_and_numbers_receipts_after_the_old_ones(empty_database: str) -> None:
    with _app(empty_database).app_context():
        upgrade()
        org = make_org("Old Org")
        client = make_client(org, "Old client")
        void = make_invoice(client, status="open")
        void_invoice(void.id, reason="dup", actor=SYSTEM, now=NOW)
        on_void = apply_payment(void.id, amount=27000, currency="USD", method="card", status="succeeded",
                                actor=SYSTEM, now=NOW, payment_intent_id="pi_void").payment
        declined = apply_payment(make_invoice(client, status="open").id, amount=27000, currency="USD", method="card",
                                 status="failed", actor=SYSTEM, now=NOW, payment_intent_id="pi_declined").payment
        void_id, on_void_id, declined_id = void.id, on_void.id, declined.id
        db.session.remove()
        downgrade(revision="0006")
        with db.engine.begin() as conn:  # as the old code left them: every payment numbered by its id
            conn.execute(text("UPDATE payment SET receipt_number = 'R-' || CAST(id AS VARCHAR(20))"))

        upgrade(revision="0007_money_attention")

        cases = db.session.execute(text("SELECT kind, case_key, amount, resolved_at FROM attention_case")).all()
        assert [tuple(c) for c in cases] == [("void_payment", f"void_payment:{on_void_id}", 27000, None)]
        flagged = db.session.execute(text("SELECT id FROM invoice WHERE attention_since IS NOT NULL")).scalars()
        assert list(flagged) == [void_id]
        assert db.session.execute(text("SELECT receipt_number FROM payment WHERE id = :id"),
                                  {"id": declined_id}).scalar() is None
        assert db.session.execute(text("SELECT last_seq FROM receipt_counter")).scalar() == declined_id
        db.session.remove()
        db.engine.dispose()


def test_it_counts_the_reminder_steps_already_past_as_done(empty_database: str) -> None:
    """Upgrading must not send a burst of reminders for invoices that were due before reminders existed."""
    today = date.today()  # the migration's own "today"
    with _app(empty_database).app_context():
        upgrade()
        client = make_client(make_org("Old Org"), "Old client")
        ids = {days: make_invoice(client, status="open", issue_date=today - timedelta(days=90),
                                  due_date=today - timedelta(days=days)).id for days in (20, 7, 3, 0, -3, -30)}
        draft = make_invoice(client, issue_date=today - timedelta(days=90), due_date=today - timedelta(days=20)).id
        db.session.remove()
        downgrade(revision="0011_portal_sign_in")

        upgrade(revision="0012_scheduler")

        done = dict(db.session.execute(text("SELECT id, reminded_through FROM invoice")).all())
        assert {days: done[invoice_id] for days, invoice_id in ids.items()} == {
            20: 14, 7: 7, 3: 1, 0: -1, -3: -7, -30: None}
        assert done[draft] is None
        db.session.remove()
        db.engine.dispose()
