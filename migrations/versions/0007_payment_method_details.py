"""how a payment was made: card brand and last 4, or the bank debit

Receipts, the invoice page and exports name the method actually used ("Visa •••• 4242", "ACH bank debit,
SANDBOX TEST BANK •••• 6789") instead of "Card". Filled in from the provider once a payment is recorded;
payments recorded before this stay unnamed ("Card").

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method_type', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('method_brand', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('method_last4', sa.String(length=4), nullable=True))
        batch_op.add_column(sa.Column('method_wallet', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('method_bank', sa.String(length=100), nullable=True))


def downgrade():
    with op.batch_alter_table('payment', schema=None) as batch_op:
        for name in ('method_bank', 'method_wallet', 'method_last4', 'method_brand', 'method_type'):
            batch_op.drop_column(name)
