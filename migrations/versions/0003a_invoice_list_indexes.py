"""indexes for the admin invoice list (sorts, status tabs and their counts, search, a client's invoices)

Revision ID: 0003a
Revises: 0002
Create Date: 2026-11-22 02:10:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0003a'
down_revision = '0002'
branch_labels = None
depends_on = None

INDEXES = {
    'ix_invoice_org_due_id': ['organization_id', 'due_date', 'id'],
    'ix_invoice_org_total_id': ['organization_id', 'total', 'id'],
    'ix_invoice_org_status_issue': ['organization_id', 'status', 'issue_date', 'id', 'due_date', 'client_id',
                                    'number'],
    'ix_invoice_org_issue_search': ['organization_id', 'issue_date', 'id', 'client_id', 'number'],
    'ix_invoice_client_issue': ['client_id', 'issue_date', 'id'],
    'ix_invoice_org_unpaid_flags': ['organization_id', 'status', 'amount_paid', 'viewed_at', 'sent_at'],
}


def upgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade():
    with op.batch_alter_table('invoice', schema=None) as batch_op:
        for name in reversed(list(INDEXES)):
            batch_op.drop_index(name)
