"""staff-edited texts of client emails and the invoice PDF, one row per saved version

Revision ID: 0009_templates_editor
Revises: 0008
Create Date: 2026-12-05 10:00:00

"""
from alembic import op
import sqlalchemy as sa

import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0009_templates_editor'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'template_override',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('template', sa.String(length=40), nullable=False),
        sa.Column('parts', sa.JSON(), nullable=False),
        sa.Column('is_default', sa.Boolean(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], ),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'], ),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_template_override_latest', 'template_override', ['organization_id', 'template', 'id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_template_override_latest', table_name='template_override')
    op.drop_table('template_override')
