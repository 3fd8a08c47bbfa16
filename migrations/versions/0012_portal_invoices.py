"""client portal invoices: the client's tax id, receipts for manual payments (organization setting)

Revision ID: 0012_portal_invoices
Revises: 0011_portal_sign_in
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_portal_invoices'
down_revision = '0011_portal_sign_in'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('client', sa.Column('tax_id', sa.String(length=64), server_default='', nullable=False))
    op.add_column('organization', sa.Column('manual_payment_receipts', sa.Boolean(), server_default=sa.true(),
                                            nullable=False))


def downgrade():
    op.execute('ALTER TABLE organization DROP COLUMN manual_payment_receipts')
    op.execute('ALTER TABLE client DROP COLUMN tax_id')
