"""JSON API and outgoing webhooks: public ids for clients, contacts and payments; API keys, idempotency records,
webhook endpoints, outgoing events and their deliveries

The public ids are added to existing tables with a plain ALTER (no batch copy on SQLite: client, contact and
payment are referenced everywhere), filled with random values for the rows already there, then made unique.

Revision ID: 0012_api
Revises: 0012_portal_cards
Create Date: 2026-12-05 10:00:00

"""
import secrets

from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0012_api'
down_revision = '0012_portal_cards'
branch_labels = None
depends_on = None

PUBLIC_ID_TABLES = ('client', 'contact', 'payment')


def _add_public_id(table):
    # NOT NULL needs a default for the rows already there; each then gets its own random id.
    op.add_column(table, sa.Column('public_id', sa.String(length=32), server_default='', nullable=False))
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.text(f'SELECT id FROM {table}'))]
    for ident in ids:
        bind.execute(sa.text(f'UPDATE {table} SET public_id = :p WHERE id = :i'),
                     {'p': secrets.token_hex(16), 'i': ident})
    if bind.dialect.name == 'postgresql':
        op.alter_column(table, 'public_id', server_default=None)
    op.create_index(op.f(f'ix_{table}_public_id'), table, ['public_id'], unique=True)


def upgrade():
    for table in PUBLIC_ID_TABLES:
        _add_public_id(table)
    op.create_table(
        'api_key',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('prefix', sa.String(length=24), nullable=False),
        sa.Column('key_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.JSON(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('expires_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_by_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_api_key_organization_id_organization')),
        sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_api_key_created_by_id_user')),
        sa.ForeignKeyConstraint(['revoked_by_id'], ['user.id'], name=op.f('fk_api_key_revoked_by_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_key')),
        sa.UniqueConstraint('key_hash', name=op.f('uq_api_key_key_hash')),
    )
    op.create_index(op.f('ix_api_key_organization_id'), 'api_key', ['organization_id'], unique=False)
    op.create_table(
        'idempotency_record',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('api_key_id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('response_status', sa.Integer(), nullable=True),
        sa.Column('response_body', sa.Text(), nullable=True),
        sa.Column('response_headers', sa.JSON(), nullable=False),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('completed_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_idempotency_record_organization_id_organization')),
        sa.ForeignKeyConstraint(['api_key_id'], ['api_key.id'], name=op.f('fk_idempotency_record_api_key_id_api_key')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_record')),
        sa.UniqueConstraint('api_key_id', 'key', name=op.f('uq_idempotency_record_api_key_id_key')),
    )
    op.create_index('ix_idempotency_record_created', 'idempotency_record', ['created_at'], unique=False)
    op.create_table(
        'webhook_endpoint',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=2000), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('secret_version', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('disabled_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('disabled_reason', sa.String(length=200), nullable=False),
        sa.Column('failing_since', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_webhook_endpoint_organization_id_organization')),
        sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_webhook_endpoint_created_by_id_user')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
        sa.UniqueConstraint('public_id', name=op.f('uq_webhook_endpoint_public_id')),
    )
    op.create_index(op.f('ix_webhook_endpoint_organization_id'), 'webhook_endpoint', ['organization_id'],
                    unique=False)
    op.create_table(
        'outgoing_event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('type', sa.String(length=40), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=True),
        sa.Column('payload', sa.Text(), nullable=False),
        sa.Column('dedupe_key', sa.String(length=255), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_outgoing_event_organization_id_organization')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_outgoing_event')),
        sa.UniqueConstraint('public_id', name=op.f('uq_outgoing_event_public_id')),
        sa.UniqueConstraint('dedupe_key', name=op.f('uq_outgoing_event_dedupe_key')),
    )
    op.create_index('ix_outgoing_event_org', 'outgoing_event', ['organization_id', 'id'], unique=False)
    op.create_table(
        'webhook_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('endpoint_id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=True),
        sa.Column('status', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('retry_until', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_attempt_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('delivered_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_webhook_delivery_organization_id_organization')),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoint.id'],
                                name=op.f('fk_webhook_delivery_endpoint_id_webhook_endpoint')),
        sa.ForeignKeyConstraint(['event_id'], ['outgoing_event.id'],
                                name=op.f('fk_webhook_delivery_event_id_outgoing_event')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_delivery')),
        sa.UniqueConstraint('endpoint_id', 'event_id', name=op.f('uq_webhook_delivery_endpoint_id_event_id')),
    )
    op.create_index('ix_webhook_delivery_due', 'webhook_delivery', ['status', 'next_attempt_at'], unique=False)
    op.create_index('ix_webhook_delivery_endpoint', 'webhook_delivery', ['endpoint_id', 'id'], unique=False)
    op.create_index('ix_webhook_delivery_order', 'webhook_delivery', ['endpoint_id', 'invoice_id', 'status', 'id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_webhook_delivery_order', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_endpoint', table_name='webhook_delivery')
    op.drop_index('ix_webhook_delivery_due', table_name='webhook_delivery')
    op.drop_table('webhook_delivery')
    op.drop_index('ix_outgoing_event_org', table_name='outgoing_event')
    op.drop_table('outgoing_event')
    op.drop_index(op.f('ix_webhook_endpoint_organization_id'), table_name='webhook_endpoint')
    op.drop_table('webhook_endpoint')
    op.drop_index('ix_idempotency_record_created', table_name='idempotency_record')
    op.drop_table('idempotency_record')
    op.drop_index(op.f('ix_api_key_organization_id'), table_name='api_key')
    op.drop_table('api_key')
    for table in reversed(PUBLIC_ID_TABLES):
        op.drop_index(op.f(f'ix_{table}_public_id'), table_name=table)
        op.execute(f'ALTER TABLE {table} DROP COLUMN public_id')
