"""portal payments: who paid (payer email), checkouts for several invoices at once, embedded checkouts

- payment.payer_email: the email typed at a pay-link checkout (a signed-in contact is payment.contact_id).
- checkout_group + checkout_group_item: one provider checkout for several invoices; payment.group_id links each
  invoice's share to it (the provider references are on the group, shared by its payments).
- checkout_session.ui_mode: hosted or embedded (Stripe's Checkout inside the portal page).

Plain ALTER ADD COLUMN on SQLite, no batch copy of payment (refund, payment_attempt and attention_case refer to
it); on SQLite the new foreign key is declared inline with the column, which it accepts for a nullable column.

Revision ID: 0012_portal_pay
Revises: 0012_portal_invoices
Create Date: 2026-12-05 10:00:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0012_portal_pay'
down_revision = '0012_portal_invoices'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'checkout_group',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('ref', sa.String(length=64), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('ui_mode', sa.String(length=20), nullable=False),
        sa.Column('session_id', sa.String(length=255), nullable=True),
        sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
        sa.Column('charge_id', sa.String(length=255), nullable=True),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('expires_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('amount > 0', name=op.f('ck_checkout_group_amount_positive')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_checkout_group_client_id_client')),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_checkout_group_contact_id_contact')),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_checkout_group_organization_id_organization')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_group')),
        sa.UniqueConstraint('ref', name=op.f('uq_checkout_group_ref')),
        sa.UniqueConstraint('session_id', name=op.f('uq_checkout_group_session_id')),
        sa.UniqueConstraint('payment_intent_id', name=op.f('uq_checkout_group_payment_intent_id')),
        sa.UniqueConstraint('charge_id', name=op.f('uq_checkout_group_charge_id')),
    )
    op.create_index(op.f('ix_checkout_group_client_id'), 'checkout_group', ['client_id'], unique=False)
    op.create_index(op.f('ix_checkout_group_organization_id'), 'checkout_group', ['organization_id'], unique=False)
    op.create_index('ix_checkout_group_open', 'checkout_group', ['status', 'created_at'], unique=False)
    op.create_table(
        'checkout_group_item',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('amount > 0', name=op.f('ck_checkout_group_item_amount_positive')),
        sa.ForeignKeyConstraint(['group_id'], ['checkout_group.id'],
                                name=op.f('fk_checkout_group_item_group_id_checkout_group'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_checkout_group_item_invoice_id_invoice')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_checkout_group_item')),
        sa.UniqueConstraint('group_id', 'invoice_id', name=op.f('uq_checkout_group_item_group_id_invoice_id')),
    )
    op.create_index(op.f('ix_checkout_group_item_invoice_id'), 'checkout_group_item', ['invoice_id'], unique=False)

    op.add_column('payment', sa.Column('payer_email', sa.String(length=254), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':  # alembic would want a batch copy to add the constraint
        op.execute('ALTER TABLE payment ADD COLUMN group_id INTEGER '
                   'CONSTRAINT fk_payment_group_id_checkout_group REFERENCES checkout_group (id)')
    else:
        op.add_column('payment', sa.Column('group_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_payment_group_id_checkout_group'), 'payment', 'checkout_group',
                              ['group_id'], ['id'])
    op.create_index(op.f('ix_payment_group_id'), 'payment', ['group_id'], unique=False)
    op.add_column('checkout_session', sa.Column('ui_mode', sa.String(length=20), server_default='hosted',
                                                nullable=False))


def downgrade():
    op.execute('ALTER TABLE checkout_session DROP COLUMN ui_mode')
    op.drop_index(op.f('ix_payment_group_id'), table_name='payment')
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_constraint(op.f('fk_payment_group_id_checkout_group'), 'payment', type_='foreignkey')
    op.execute('ALTER TABLE payment DROP COLUMN group_id')
    op.execute('ALTER TABLE payment DROP COLUMN payer_email')
    op.drop_index(op.f('ix_checkout_group_item_invoice_id'), table_name='checkout_group_item')
    op.drop_table('checkout_group_item')
    op.drop_index('ix_checkout_group_open', table_name='checkout_group')
    op.drop_index(op.f('ix_checkout_group_organization_id'), table_name='checkout_group')
    op.drop_index(op.f('ix_checkout_group_client_id'), table_name='checkout_group')
    op.drop_table('checkout_group')
