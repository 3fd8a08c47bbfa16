"""webhook events filed under their invoice and organization

The admin inbox showed staff the events about their organization by reading the latest 300 events and
parsing each payload (plus a payment lookup per event): an organization with few events among another's many
saw an empty inbox. Events now carry invoice_id and organization_id, set when they are applied; existing rows
are filed here the same way (our metadata's invoice_id, else the payment of the event's charge or intent).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 06:00:00

"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('webhook_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('invoice_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('organization_id', sa.Integer(), nullable=True))
        batch_op.create_index('ix_webhook_event_organization', ['organization_id', 'id'], unique=False)
    _backfill(op.get_bind())
    # Last: on PostgreSQL a foreign key locks the invoice table against writes until the migration commits.
    with op.batch_alter_table('webhook_event', schema=None) as batch_op:
        batch_op.create_foreign_key('fk_webhook_event_invoice_id_invoice', 'invoice', ['invoice_id'], ['id'])
        batch_op.create_foreign_key('fk_webhook_event_organization_id_organization', 'organization',
                                    ['organization_id'], ['id'])


PAGE = 1000


def _backfill(conn):
    """Pages of events by id (bounded memory), one lookup of invoices and one of payments per page."""
    last = 0
    while True:
        page = conn.execute(sa.text("SELECT id, payload FROM webhook_event WHERE id > :last ORDER BY id LIMIT :n"),
                            {"last": last, "n": PAGE}).all()
        if not page:
            return
        last = page[-1][0]
        refs = {event_id: _refs(payload) for event_id, payload in page}
        invoices = _rows(conn, "SELECT id, public_id, organization_id FROM invoice WHERE id IN :ids",
                         {r[0] for r in refs.values() if r[0] is not None})
        charges = {c for r in refs.values() for c in r[2:] if c}
        payments = {}
        if charges:
            for invoice_id, charge_id, intent_id in conn.execute(sa.text(
                    "SELECT invoice_id, charge_id, payment_intent_id FROM payment "
                    "WHERE charge_id IN :refs OR payment_intent_id IN :refs"
            ).bindparams(sa.bindparam("refs", expanding=True)), {"refs": sorted(charges)}):
                payments.update({ref: invoice_id for ref in (charge_id, intent_id) if ref})
        by_payment = _rows(conn, "SELECT id, public_id, organization_id FROM invoice WHERE id IN :ids",
                           set(payments.values()))
        updates = []
        for event_id, (meta_invoice, public_id, charge, intent) in refs.items():
            if meta_invoice is not None:  # our metadata, checked against the public id (another install's id 1)
                row = invoices.get(meta_invoice)
                found = row if row and (not public_id or public_id == row[1]) else None
            else:
                found = by_payment.get(payments.get(charge) or payments.get(intent))
            if found is not None:
                updates.append({"id": event_id, "invoice": found[0], "org": found[2]})
        if updates:
            conn.execute(sa.text("UPDATE webhook_event SET invoice_id = :invoice, organization_id = :org "
                                 "WHERE id = :id"), updates)


def _refs(payload):
    """(metadata invoice id, metadata public id, charge id, payment intent id) of a stored event."""
    try:
        obj = json.loads(payload)["data"]["object"]
    except (ValueError, KeyError, TypeError):
        return None, None, None, None
    meta = obj.get("metadata") or {}
    invoice_id = int(meta["invoice_id"]) if str(meta.get("invoice_id") or "").isdigit() else None
    charge, intent = obj.get("charge"), obj.get("payment_intent")
    return (invoice_id, meta.get("invoice_public_id"), charge if isinstance(charge, str) else None,
            intent if isinstance(intent, str) else None)


def _rows(conn, sql, ids):
    if not ids:
        return {}
    query = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
    return {row[0]: tuple(row) for row in conn.execute(query, {"ids": sorted(ids)})}


def downgrade():
    with op.batch_alter_table('webhook_event', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_event_organization')
        batch_op.drop_constraint('fk_webhook_event_organization_id_organization', type_='foreignkey')
        batch_op.drop_constraint('fk_webhook_event_invoice_id_invoice', type_='foreignkey')
        batch_op.drop_column('organization_id')
        batch_op.drop_column('invoice_id')
