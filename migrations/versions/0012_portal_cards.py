"""client portal: saved cards (payment_method) and autopay consents (autopay_consent)

Two new tables, nothing changed on existing ones: the client's default card and autopay switch stay in the
columns it already has (client.autopay_payment_method, autopay_enabled, autopay_consent_at).

Revision ID: 0012_portal_cards
Revises: 0011_portal_sign_in
Create Date: 2026-12-04 10:00:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0012_portal_cards'
down_revision = '0011_portal_sign_in'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'payment_method',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('provider_id', sa.String(length=255), nullable=False),
        sa.Column('customer_id', sa.String(length=255), nullable=True),
        sa.Column('setup_session_id', sa.String(length=255), nullable=True),
        sa.Column('brand', sa.String(length=40), nullable=False),
        sa.Column('last4', sa.String(length=4), nullable=False),
        sa.Column('exp_month', sa.Integer(), nullable=False),
        sa.Column('exp_year', sa.Integer(), nullable=False),
        sa.Column('added_by_contact_id', sa.Integer(), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('removed_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_payment_method_organization_id_organization')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_payment_method_client_id_client')),
        sa.ForeignKeyConstraint(['added_by_contact_id'], ['contact.id'],
                                name=op.f('fk_payment_method_added_by_contact_id_contact')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_method')),
        sa.UniqueConstraint('provider_id', name=op.f('uq_payment_method_provider_id')),
        sa.UniqueConstraint('setup_session_id', name=op.f('uq_payment_method_setup_session_id')),
    )
    op.create_index('ix_payment_method_client', 'payment_method', ['client_id', 'removed_at'], unique=False)
    op.create_table(
        'autopay_consent',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('payment_method_id', sa.Integer(), nullable=True),
        sa.Column('mode', sa.String(length=20), nullable=False),
        sa.Column('text_version', sa.String(length=40), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('ip', sa.String(length=45), nullable=False),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('ended_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('ended_by_type', sa.String(length=10), nullable=True),
        sa.Column('ended_by_id', sa.Integer(), nullable=True),
        sa.Column('ended_by_label', sa.String(length=254), nullable=False),
        sa.Column('end_reason', sa.String(length=40), nullable=True),
        sa.CheckConstraint("mode IN ('due_date', 'on_issue')", name=op.f('ck_autopay_consent_mode')),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_autopay_consent_organization_id_organization')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_autopay_consent_client_id_client')),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_autopay_consent_contact_id_contact')),
        sa.ForeignKeyConstraint(['payment_method_id'], ['payment_method.id'],
                                name=op.f('fk_autopay_consent_payment_method_id_payment_method')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_autopay_consent')),
    )
    op.create_index('ix_autopay_consent_client', 'autopay_consent', ['client_id', 'ended_at'], unique=False)


def downgrade():
    op.drop_index('ix_autopay_consent_client', table_name='autopay_consent')
    op.drop_table('autopay_consent')
    op.drop_index('ix_payment_method_client', table_name='payment_method')
    op.drop_table('payment_method')
