"""autopay: per-invoice autopay state and what each charge attempt sent

- invoice_autopay: one row per invoice opted in to autopay (its client had autopay on when it was issued):
  status (scheduled, processing, succeeded, failed, cancelled), the card, next charge time, last attempt time,
  attempt count, the first failure (retries are 3, 7 and 14 days after it) and the last failure.
- charge_attempt: the organization, provider, card (ours and the provider's id), customer, charge, error message,
  decline kind, next retry time and the payment it made: what a replay with the same idempotency key must send
  again, and what the invoice timeline shows.

Plain ALTER ADD COLUMN on SQLite (no batch copy of charge_attempt).

Revision ID: 0013_autopay
Revises: 0012_scheduler
Create Date: 2026-12-01 20:00:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0013_autopay'
down_revision = '0012_scheduler'
branch_labels = None
depends_on = None

FOREIGN = (  # charge_attempt column -> referenced table
    ('organization_id', 'organization'),
    ('payment_method_id', 'payment_method'),
    ('payment_id', 'payment'),
)
PLAIN = (
    ('provider', sa.String(length=20)),
    ('provider_method_id', sa.String(length=255)),
    ('customer_id', sa.String(length=255)),
    ('charge_id', sa.String(length=255)),
    ('error_message', sa.Text()),
    ('decline_kind', sa.String(length=20)),
    ('next_retry_at', invoicing.models.UTCDateTime(timezone=True)),
)


def upgrade():
    op.create_table(
        'invoice_autopay',
        sa.Column('invoice_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('mode', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('payment_method_id', sa.Integer(), nullable=True),
        sa.Column('next_charge_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_attempt_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('attempt_count', sa.Integer(), nullable=False),
        sa.Column('first_failed_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_failure_code', sa.String(length=100), nullable=True),
        sa.Column('last_failure_message', sa.Text(), nullable=True),
        sa.Column('end_reason', sa.String(length=40), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("status IN ('scheduled', 'processing', 'succeeded', 'failed', 'cancelled')",
                           name=op.f('ck_invoice_autopay_status')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_invoice_autopay_client_id_client')),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_invoice_autopay_invoice_id_invoice')),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_invoice_autopay_organization_id_organization')),
        sa.ForeignKeyConstraint(['payment_method_id'], ['payment_method.id'],
                                name=op.f('fk_invoice_autopay_payment_method_id_payment_method')),
        sa.PrimaryKeyConstraint('invoice_id', name=op.f('pk_invoice_autopay')),
    )
    op.create_index('ix_invoice_autopay_due', 'invoice_autopay', ['status', 'next_charge_at'], unique=False)
    op.create_index('ix_invoice_autopay_client', 'invoice_autopay', ['client_id', 'status'], unique=False)
    op.create_index('ix_invoice_autopay_org', 'invoice_autopay', ['organization_id', 'status', 'next_charge_at'],
                    unique=False)

    sqlite = op.get_bind().dialect.name == 'sqlite'
    for column, table in FOREIGN:
        name = f'fk_charge_attempt_{column}_{table}'
        if sqlite:  # alembic would want a batch copy to add the constraint
            op.execute(f'ALTER TABLE charge_attempt ADD COLUMN {column} INTEGER '
                       f'CONSTRAINT {name} REFERENCES {table} (id)')
        else:
            op.add_column('charge_attempt', sa.Column(column, sa.Integer(), nullable=True))
            op.create_foreign_key(name, 'charge_attempt', table, [column], ['id'])
    for column, type_ in PLAIN:
        op.add_column('charge_attempt', sa.Column(column, type_, nullable=True))
    op.create_index('ix_charge_attempt_status', 'charge_attempt', ['status', 'created_at'], unique=False)


def downgrade():
    op.drop_index('ix_charge_attempt_status', table_name='charge_attempt')
    sqlite = op.get_bind().dialect.name == 'sqlite'
    for column, table in FOREIGN:
        if not sqlite:
            op.drop_constraint(f'fk_charge_attempt_{column}_{table}', 'charge_attempt', type_='foreignkey')
        op.execute(f'ALTER TABLE charge_attempt DROP COLUMN {column}')
    for column, _ in PLAIN:
        op.execute(f'ALTER TABLE charge_attempt DROP COLUMN {column}')
    op.drop_index('ix_invoice_autopay_org', table_name='invoice_autopay')
    op.drop_index('ix_invoice_autopay_client', table_name='invoice_autopay')
    op.drop_index('ix_invoice_autopay_due', table_name='invoice_autopay')
    op.drop_table('invoice_autopay')
