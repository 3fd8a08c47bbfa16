"""subscriptions: plans and their prices, subscriptions, each period's invoice once, plan changes, client credit

- plan, plan_price: what a client can subscribe to; a price is never edited once used (a new row instead).
- subscription: a client on a price, its current period, trial, pending downgrade, cancellation.
- subscription_period: UNIQUE(subscription, period start) -> one invoice per period.
- subscription_change: plan and seat changes with their proration.
- credit_entry: a client's credit balance per currency, as a ledger.
- subscription_signup: a public sign-up from its form (UNIQUE token: a resubmit makes one) to its subscription.

Revision ID: 0013_subscriptions
Revises: 0013_autopay
Create Date: 2026-12-01 19:50:26.261930

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0013_subscriptions'
down_revision = '0013_autopay'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('plan',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('slug', sa.String(length=80), nullable=False),
    sa.Column('public', sa.Boolean(), nullable=False),
    sa.Column('trial_days', sa.Integer(), nullable=False),
    sa.Column('tax_rate_milli', sa.Integer(), nullable=False),
    sa.Column('per_seat', sa.Boolean(), nullable=False),
    sa.Column('archived_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('trial_days >= 0', name=op.f('ck_plan_trial_days_not_negative')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_plan_organization_id_organization')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan')),
    sa.UniqueConstraint('slug', name=op.f('uq_plan_slug'))
    )
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.create_index('ix_plan_org', ['organization_id', 'archived_at', 'id'], unique=False)

    op.create_table('plan_price',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('interval_unit', sa.String(length=10), nullable=False),
    sa.Column('interval_count', sa.Integer(), nullable=False),
    sa.Column('setup_fee', sa.BigInteger(), nullable=False),
    sa.Column('archived_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("interval_unit IN ('month', 'year')", name=op.f('ck_plan_price_interval_unit')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_plan_price_amount_not_negative')),
    sa.CheckConstraint('interval_count >= 1', name=op.f('ck_plan_price_interval_count_positive')),
    sa.CheckConstraint('setup_fee >= 0', name=op.f('ck_plan_price_setup_fee_not_negative')),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], name=op.f('fk_plan_price_plan_id_plan')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_plan_price'))
    )
    with op.batch_alter_table('plan_price', schema=None) as batch_op:
        batch_op.create_index('ix_plan_price_plan', ['plan_id', 'archived_at'], unique=False)

    op.create_table('subscription',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=True),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('price_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('anchor_day', sa.Integer(), nullable=False),
    sa.Column('current_period_start', sa.Date(), nullable=False),
    sa.Column('current_period_end', sa.Date(), nullable=False),
    sa.Column('trial_end', sa.Date(), nullable=True),
    sa.Column('trial_reminded_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_at_period_end', sa.Boolean(), nullable=False),
    sa.Column('pending_price_id', sa.Integer(), nullable=True),
    sa.Column('pending_quantity', sa.Integer(), nullable=True),
    sa.Column('past_due_since', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paused_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('canceled_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('cancel_reason', sa.String(length=200), nullable=False),
    sa.Column('ended_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('consent_id', sa.Integer(), nullable=True),
    sa.Column('signup_key', sa.String(length=64), nullable=True),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('trialing', 'active', 'past_due', 'paused', 'canceled', 'ended')", name=op.f('ck_subscription_status')),
    sa.CheckConstraint('quantity >= 1', name=op.f('ck_subscription_quantity_positive')),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_subscription_client_id_client')),
    sa.ForeignKeyConstraint(['consent_id'], ['autopay_consent.id'], name=op.f('fk_subscription_consent_id_autopay_consent')),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_subscription_contact_id_contact')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_subscription_organization_id_organization')),
    sa.ForeignKeyConstraint(['pending_price_id'], ['plan_price.id'], name=op.f('fk_subscription_pending_price_id_plan_price')),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], name=op.f('fk_subscription_plan_id_plan')),
    sa.ForeignKeyConstraint(['price_id'], ['plan_price.id'], name=op.f('fk_subscription_price_id_plan_price')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription')),
    sa.UniqueConstraint('public_id', name=op.f('uq_subscription_public_id')),
    sa.UniqueConstraint('signup_key', name=op.f('uq_subscription_signup_key'))
    )
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.create_index('ix_subscription_client', ['client_id', 'status'], unique=False)
        batch_op.create_index('ix_subscription_due', ['status', 'current_period_end'], unique=False)
        batch_op.create_index('ix_subscription_org_status', ['organization_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_subscription_plan', ['plan_id', 'status'], unique=False)
        batch_op.create_index('ix_subscription_org_id', ['organization_id', 'id'], unique=False)  # staff list

    op.create_table('subscription_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('from_price_id', sa.Integer(), nullable=False),
    sa.Column('to_price_id', sa.Integer(), nullable=False),
    sa.Column('from_quantity', sa.Integer(), nullable=False),
    sa.Column('to_quantity', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('effective_on', sa.Date(), nullable=False),
    sa.Column('credit', sa.BigInteger(), nullable=False),
    sa.Column('charge', sa.BigInteger(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=True),
    sa.Column('request_key', sa.String(length=64), nullable=True),
    sa.Column('actor_type', sa.String(length=10), nullable=False),
    sa.Column('actor_label', sa.String(length=254), nullable=False),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['from_price_id'], ['plan_price.id'], name=op.f('fk_subscription_change_from_price_id_plan_price')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_subscription_change_invoice_id_invoice')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_subscription_change_subscription_id_subscription')),
    sa.ForeignKeyConstraint(['to_price_id'], ['plan_price.id'], name=op.f('fk_subscription_change_to_price_id_plan_price')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription_change')),
    sa.UniqueConstraint('request_key', name=op.f('uq_subscription_change_request_key'))
    )
    with op.batch_alter_table('subscription_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_change_subscription_id'), ['subscription_id'], unique=False)

    op.create_table('subscription_period',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_subscription_period_invoice_id_invoice')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_subscription_period_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription_period')),
    sa.UniqueConstraint('invoice_id', name=op.f('uq_subscription_period_invoice_id')),
    sa.UniqueConstraint('subscription_id', 'period_start', name=op.f('uq_subscription_period_subscription_id_period_start'))
    )
    op.create_table('credit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('change_id', sa.Integer(), nullable=True),
    sa.Column('invoice_id', sa.Integer(), nullable=True),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount <> 0', name=op.f('ck_credit_entry_amount_not_zero')),
    sa.ForeignKeyConstraint(['change_id'], ['subscription_change.id'], name=op.f('fk_credit_entry_change_id_subscription_change')),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_credit_entry_client_id_client')),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_credit_entry_invoice_id_invoice')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_credit_entry_organization_id_organization')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_credit_entry_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_credit_entry')),
    sa.UniqueConstraint('invoice_id', 'reason', name=op.f('uq_credit_entry_invoice_id_reason'))
    )
    with op.batch_alter_table('credit_entry', schema=None) as batch_op:
        batch_op.create_index('ix_credit_entry_client', ['client_id', 'currency'], unique=False)

    with op.batch_alter_table('subscription_change', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_subscription_change_invoice_id'), ['invoice_id'], unique=False)

    # A plain ADD COLUMN (SQLite too): a batch copy of organization would break the rows that reference it.
    op.add_column('organization', sa.Column('subscription_unpaid', sa.String(length=12), server_default='cancel',
                                            nullable=False))

    _upgrade_signup()


def downgrade():
    _downgrade_signup()
    op.execute('ALTER TABLE organization DROP COLUMN subscription_unpaid')  # SQLite 3.35+ and PostgreSQL

    with op.batch_alter_table('subscription_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_change_invoice_id'))

    with op.batch_alter_table('credit_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_entry_client')

    op.drop_table('credit_entry')
    op.drop_table('subscription_period')
    with op.batch_alter_table('subscription_change', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_subscription_change_subscription_id'))

    op.drop_table('subscription_change')
    with op.batch_alter_table('subscription', schema=None) as batch_op:
        batch_op.drop_index('ix_subscription_org_id')
        batch_op.drop_index('ix_subscription_plan')
        batch_op.drop_index('ix_subscription_org_status')
        batch_op.drop_index('ix_subscription_due')
        batch_op.drop_index('ix_subscription_client')

    op.drop_table('subscription')
    with op.batch_alter_table('plan_price', schema=None) as batch_op:
        batch_op.drop_index('ix_plan_price_plan')

    op.drop_table('plan_price')
    with op.batch_alter_table('plan', schema=None) as batch_op:
        batch_op.drop_index('ix_plan_org')

    op.drop_table('plan')


# subs-portal: the public sign-up between its form and its subscription (SubscriptionSignup)
def _upgrade_signup():
    op.create_table('subscription_signup',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('plan_id', sa.Integer(), nullable=False),
    sa.Column('price_id', sa.Integer(), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('signup_key', sa.String(length=64), nullable=False),
    sa.Column('client_id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('consent_id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=False),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('card', 'done')", name=op.f('ck_subscription_signup_status')),
    sa.CheckConstraint('quantity >= 1', name=op.f('ck_subscription_signup_quantity_positive')),
    sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_subscription_signup_client_id_client')),
    sa.ForeignKeyConstraint(['consent_id'], ['autopay_consent.id'], name=op.f('fk_subscription_signup_consent_id_autopay_consent')),
    sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_subscription_signup_contact_id_contact')),
    sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], name=op.f('fk_subscription_signup_organization_id_organization')),
    sa.ForeignKeyConstraint(['plan_id'], ['plan.id'], name=op.f('fk_subscription_signup_plan_id_plan')),
    sa.ForeignKeyConstraint(['price_id'], ['plan_price.id'], name=op.f('fk_subscription_signup_price_id_plan_price')),
    sa.ForeignKeyConstraint(['subscription_id'], ['subscription.id'], name=op.f('fk_subscription_signup_subscription_id_subscription')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_subscription_signup')),
    sa.UniqueConstraint('signup_key', name=op.f('uq_subscription_signup_signup_key'))
    )
    with op.batch_alter_table('subscription_signup', schema=None) as batch_op:
        batch_op.create_index('ix_subscription_signup_org', ['organization_id', 'created_at'], unique=False)


def _downgrade_signup():
    with op.batch_alter_table('subscription_signup', schema=None) as batch_op:
        batch_op.drop_index('ix_subscription_signup_org')

    op.drop_table('subscription_signup')
