"""reports: indexes that let every figure read one index range (cards, months, methods, aging)

Revision ID: 0012_reports
Revises: 0012_portal_pay
Create Date: 2026-12-02 10:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0012_reports'
down_revision = '0012_portal_pay'
branch_labels = None
depends_on = None

INDEXES = {
    'ix_invoice_org_issue_money': ('invoice', ['organization_id', 'issue_date', 'status', 'currency', 'total',
                                               'amount_paid']),
    'ix_invoice_org_paid_at': ('invoice', ['organization_id', 'paid_at', 'status', 'currency', 'issue_date',
                                           'due_date']),
    'ix_invoice_org_unpaid_money': ('invoice', ['organization_id', 'status', 'currency', 'due_date', 'client_id',
                                                'total', 'amount_paid']),
    'ix_payment_org_paid_on': ('payment', ['organization_id', 'paid_on', 'status', 'currency', 'amount', 'method',
                                           'method_type', 'contact_id', 'invoice_id']),
    'ix_payment_org_succeeded': ('payment', ['organization_id', 'succeeded_at', 'paid_on', 'status', 'currency',
                                             'amount', 'method', 'method_type', 'contact_id', 'invoice_id']),
    'ix_refund_org_created': ('refund', ['organization_id', 'created_at']),
    'ix_invoice_org_updated': ('invoice', ['organization_id', 'updated_at']),
    'ix_charge_attempt_payment_intent': ('charge_attempt', ['payment_intent_id']),
}


def upgrade():
    for name, (table, columns) in INDEXES.items():
        op.create_index(name, table, columns, unique=False)


def downgrade():
    for name, (table, _) in reversed(INDEXES.items()):
        op.drop_index(name, table_name=table)
