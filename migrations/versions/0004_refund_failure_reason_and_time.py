"""refunds that fail at the provider: why (the provider's failure_reason) and when

Refund.status already exists ("succeeded"); it now also takes "failed" and "canceled" (services/payments.py
reverse_refund). Both new columns are nullable: existing refunds succeeded and need no backfill.

Revision ID: 0004
Revises: 0003c
Create Date: 2026-11-22 05:15:18

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003c'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column('failed_at', invoicing.models.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('refund', schema=None) as batch_op:
        batch_op.drop_column('failed_at')
        batch_op.drop_column('failure_reason')
