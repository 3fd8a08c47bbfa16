"""Data migrations, run on a database of their own at the revision before them (same engine as the suite)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask_migrate import upgrade
from sqlalchemy import create_engine, make_url, text

from invoicing import create_app
from invoicing.extensions import db
from tests.conftest import FAST_HASH, NOW, make_client, make_invoice, make_org


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
        upgrade(revision="0005")
        org = make_org("Old Org")
        invoice = make_invoice(make_client(org, "Old client"), status="open")
        # SQL, not the ORM: today's Payment has columns this old schema lacks.
        db.session.execute(text(
            "INSERT INTO payment (organization_id, invoice_id, amount, currency, method, status, amount_refunded,"
            " payment_intent_id, charge_id, reference, overpayment, created_at) VALUES (:org, :invoice, 1000, 'USD',"
            " 'card', 'succeeded', 0, 'pi_old', 'ch_old', '', false, :now)"),
            {"org": org.id, "invoice": invoice.id, "now": NOW})
        db.session.commit()
        _store_event("evt_meta", {"object": "checkout.session", "metadata": {"invoice_id": str(invoice.id)}})
        _store_event("evt_charge", {"object": "dispute", "charge": "ch_old"})
        _store_event("evt_other", {"object": "customer", "id": "cus_1"})
        _store_event("evt_garbled", {"object": "charge", "payment_intent": "pi_nobody_knows"})
        _store_event("evt_foreign", {"object": "checkout.session",
                                     "metadata": {"invoice_id": str(invoice.id), "invoice_public_id": "f" * 32}})

        upgrade(revision="0006")

        rows = db.session.execute(text(
            "SELECT event_id, invoice_id, organization_id FROM webhook_event ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [("evt_meta", invoice.id, org.id), ("evt_charge", invoice.id, org.id),
                                            ("evt_other", None, None), ("evt_garbled", None, None),
                                            ("evt_foreign", None, None)]
        db.session.remove()
        db.engine.dispose()
