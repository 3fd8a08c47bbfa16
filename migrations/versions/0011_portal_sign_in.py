"""client portal sign-in: contact sessions (version, last sign-in) and emailed magic links

Revision ID: 0011_portal_sign_in
Revises: 0009_tenants_ui
Create Date: 2026-12-01 15:30:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0011_portal_sign_in'
down_revision = '0009_tenants_ui'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('contact', sa.Column('session_version', sa.Integer(), server_default='0', nullable=False))
    op.add_column('contact', sa.Column('last_login_at', invoicing.models.UTCDateTime(timezone=True), nullable=True))
    op.create_table(
        'portal_login',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('expires_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('used_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contact.id'], name=op.f('fk_portal_login_contact_id_contact')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_portal_login')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_portal_login_token_hash')),
    )
    op.create_index(op.f('ix_portal_login_contact_id'), 'portal_login', ['contact_id'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_portal_login_contact_id'), table_name='portal_login')
    op.drop_table('portal_login')
    op.execute('ALTER TABLE contact DROP COLUMN last_login_at')
    op.execute('ALTER TABLE contact DROP COLUMN session_version')
