"""client portal invoices: indexes for a company's invoices by status and for its search, the client's tax id,
receipts for manual payments (organization setting)

Revision ID: 0012_portal_invoices
Revises: 0012_api
Create Date: 2026-12-02 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0012_portal_invoices'
down_revision = '0012_api'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('client', sa.Column('tax_id', sa.String(length=64), server_default='', nullable=False))
    op.add_column('organization', sa.Column('manual_payment_receipts', sa.Boolean(), server_default=sa.true(),
                                            nullable=False))
    op.create_index('ix_invoice_client_status', 'invoice', ['client_id', 'status', 'issue_date', 'id', 'currency',
                                                            'due_date', 'total', 'amount_paid'], unique=False)
    op.create_index('ix_invoice_client_issue_search', 'invoice',
                    ['client_id', 'issue_date', 'id', 'status', 'number', 'project_ref'], unique=False)
    op.drop_index('ix_invoice_client_issue', table_name='invoice')  # the new one starts with the same columns


def downgrade():
    op.create_index('ix_invoice_client_issue', 'invoice', ['client_id', 'issue_date', 'id'], unique=False)
    op.drop_index('ix_invoice_client_issue_search', table_name='invoice')
    op.drop_index('ix_invoice_client_status', table_name='invoice')
    op.execute('ALTER TABLE organization DROP COLUMN manual_payment_receipts')
    op.execute('ALTER TABLE client DROP COLUMN tax_id')
