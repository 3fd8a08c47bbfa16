"""payments: the provider's time of the last move between processing and failed

Events arrive out of order: services/payments.py ignores a processing <-> failed observation older than
Payment.provider_state_at. Nullable with no backfill: a payment without it takes the next observation, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 05:50:00

"""
from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('provider_state_at', invoicing.models.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.drop_column('provider_state_at')
