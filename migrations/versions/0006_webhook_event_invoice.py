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
        batch_op.create_foreign_key('fk_webhook_event_invoice_id_invoice', 'invoice', ['invoice_id'], ['id'])
        batch_op.create_foreign_key('fk_webhook_event_organization_id_organization', 'organization',
                                    ['organization_id'], ['id'])
        batch_op.create_index('ix_webhook_event_organization', ['organization_id', 'id'], unique=False)
    _backfill(op.get_bind())


def _backfill(conn):
    events = conn.execute(sa.text("SELECT id, payload FROM webhook_event")).all()
    for event_id, payload in events:
        try:
            obj = json.loads(payload)["data"]["object"]
        except (ValueError, KeyError, TypeError):
            continue
        meta = obj.get("metadata") or {}
        invoice_id = int(meta["invoice_id"]) if str(meta.get("invoice_id") or "").isdigit() else None
        if invoice_id is None:
            refs = {k: obj.get(k) for k in ("charge", "payment_intent") if isinstance(obj.get(k), str)}
            if refs:
                where = " OR ".join(f"{'charge_id' if k == 'charge' else 'payment_intent_id'} = :{k}" for k in refs)
                invoice_id = conn.execute(sa.text(f"SELECT invoice_id FROM payment WHERE {where} LIMIT 1"),
                                          refs).scalar()
        org_id = conn.execute(sa.text("SELECT organization_id FROM invoice WHERE id = :id"),
                              {"id": invoice_id}).scalar() if invoice_id else None
        if org_id is not None:
            conn.execute(sa.text("UPDATE webhook_event SET invoice_id = :invoice, organization_id = :org "
                                 "WHERE id = :id"), {"invoice": invoice_id, "org": org_id, "id": event_id})


def downgrade():
    with op.batch_alter_table('webhook_event', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_event_organization')
        batch_op.drop_constraint('fk_webhook_event_organization_id_organization', type_='foreignkey')
        batch_op.drop_constraint('fk_webhook_event_invoice_id_invoice', type_='foreignkey')
        batch_op.drop_column('organization_id')
        batch_op.drop_column('invoice_id')
