"""organizations managed in the admin: an optional public URL of their own, and archiving

Both columns are nullable: existing organizations keep BASE_URL for their links and stay active.

Revision ID: 0009_tenants_ui
Revises: 0009_templates_editor
Create Date: 2026-12-03 10:00:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0009_tenants_ui'
down_revision = '0009_templates_editor'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ALTERs and an index, no batch table copy: on SQLite a copy would drop and re-create organization,
    # which every other table references.
    op.add_column('organization', sa.Column('public_url', sa.String(length=200), nullable=True))
    op.add_column('organization', sa.Column('archived_at', invoicing.models.UTCDateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_organization_public_url'), 'organization', ['public_url'], unique=True)


def downgrade():
    op.drop_index(op.f('ix_organization_public_url'), table_name='organization')
    op.execute('ALTER TABLE organization DROP COLUMN archived_at')
    op.execute('ALTER TABLE organization DROP COLUMN public_url')
