"""the pay page's version: invoice.version counts every change a client could see on it

- invoice.version: bumped (services/pageversion.py) whenever the invoice row changes in what the pay page shows,
  or one of its payments, refunds or lines does. The pay page's rendering is kept per process under it, read
  with the token in one indexed statement.

Revision ID: 0013_perf_pay
Revises: 0013_subscriptions
Create Date: 2026-12-01 20:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0013_perf_pay'
down_revision = '0013_subscriptions'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ALTER, no batch table copy (on SQLite a copy would drop and re-create a table others reference).
    op.add_column('invoice', sa.Column('version', sa.Integer(), server_default='1', nullable=False))


def downgrade():
    op.execute('ALTER TABLE invoice DROP COLUMN version')
