"""sandbox payment provider state

Revision ID: 0003c
Revises: 0003a
Create Date: 2026-11-22 02:10:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0003c'
down_revision = '0003a'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('sandbox_object',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_sandbox_object'))
    )
    with op.batch_alter_table('sandbox_object', schema=None) as batch_op:
        batch_op.create_index('ix_sandbox_object_kind', ['kind', 'created_at'], unique=False)


def downgrade():
    with op.batch_alter_table('sandbox_object', schema=None) as batch_op:
        batch_op.drop_index('ix_sandbox_object_kind')

    op.drop_table('sandbox_object')
