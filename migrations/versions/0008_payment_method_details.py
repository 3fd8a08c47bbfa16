"""how a payment was made: card brand and last 4, or the bank debit

Receipts, the invoice page and exports name the method actually used ("Visa •••• 4242", "ACH bank debit,
SANDBOX TEST BANK •••• 6789") instead of "Card". Filled in from the provider once a payment is recorded;
payments recorded before this stay unnamed ("Card").

Revision ID: 0008
Revises: 0007_money_attention
Create Date: 2026-12-01 14:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007_money_attention'
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
    # Not batch mode: on SQLite it would copy and drop the payment table, which the refunds pointing at it forbid.
    for name in ('method_bank', 'method_wallet', 'method_last4', 'method_brand', 'method_type'):
        op.execute(f'ALTER TABLE payment DROP COLUMN {name}')
