"""the scheduler's work: automatic reminders, email opens, recurring profiles, job durations

- organization.track_email_opens: invoice and reminder emails carry an open-tracking pixel (default on).
- client.reminders_opt_out, invoice.reminders_paused_at: who gets no automatic reminders.
- invoice.reminded_through: the reminder steps done for an invoice (offset in days from its due date). Open
  invoices are filed as done up to the step that applies today (defaults: 7 and 1 days before, 1, 7 and 14
  after), so upgrading sends no burst of reminders for invoices that were due before reminders existed; they
  get their next step when it comes.
- outbox_email.opened_at, open_count: the tracking pixel was loaded.
- job_run.last_duration_ms: the Scheduler page shows how long each job's last run took.
- recurring_profile, recurring_period: what to invoice every period; UNIQUE(profile, period start).

Revision ID: 0012_scheduler
Revises: 0012_reports
Create Date: 2026-12-01 16:00:00

"""
from datetime import date, timedelta

from alembic import op
import sqlalchemy as sa
import invoicing.models  # noqa: F401  (custom column types)


# revision identifiers, used by Alembic.
revision = '0012_scheduler'
down_revision = '0012_reports'
branch_labels = None
depends_on = None

OFFSETS = (14, 7, 1, -1, -7)  # the default steps, latest first (the due-date step is off by default)


def upgrade():
    # Plain ALTERs, no batch table copy: on SQLite a copy would drop and re-create tables others reference.
    op.add_column('organization', sa.Column('track_email_opens', sa.Boolean(), server_default=sa.true(),
                                            nullable=False))
    op.add_column('client', sa.Column('reminders_opt_out', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('invoice', sa.Column('reminders_paused_at', invoicing.models.UTCDateTime(timezone=True),
                                       nullable=True))
    op.add_column('invoice', sa.Column('reminded_through', sa.Integer(), nullable=True))
    op.add_column('outbox_email', sa.Column('opened_at', invoicing.models.UTCDateTime(timezone=True), nullable=True))
    op.add_column('outbox_email', sa.Column('open_count', sa.Integer(), server_default='0', nullable=False))
    op.add_column('job_run', sa.Column('last_duration_ms', sa.Integer(), nullable=True))
    _file_current_reminders(op.get_bind())

    op.create_table(
        'recurring_profile',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('client_id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('lines', sa.JSON(), nullable=False),
        sa.Column('notes', sa.Text(), nullable=False),
        sa.Column('interval_unit', sa.String(length=10), nullable=False),
        sa.Column('interval_count', sa.Integer(), nullable=False),
        sa.Column('start_date', sa.Date(), nullable=False),
        sa.Column('end_date', sa.Date(), nullable=True),
        sa.Column('max_invoices', sa.Integer(), nullable=True),
        sa.Column('payment_terms_days', sa.Integer(), nullable=False),
        sa.Column('auto_send', sa.Boolean(), nullable=False),
        sa.Column('autopay', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('anchor_date', sa.Date(), nullable=False),
        sa.Column('anchor_day', sa.Integer(), nullable=False),
        sa.Column('anchor_index', sa.Integer(), nullable=False),
        sa.Column('next_index', sa.Integer(), nullable=False),
        sa.Column('next_period_start', sa.Date(), nullable=True),
        sa.Column('invoices_made', sa.Integer(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('paused_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('ended_at', invoicing.models.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("interval_count >= 1", name=op.f('ck_recurring_profile_interval_count_positive')),
        sa.CheckConstraint("interval_unit IN ('week', 'month', 'quarter', 'year')",
                           name=op.f('ck_recurring_profile_interval_unit')),
        sa.CheckConstraint("status IN ('active', 'paused', 'ended')", name=op.f('ck_recurring_profile_status')),
        sa.ForeignKeyConstraint(['client_id'], ['client.id'], name=op.f('fk_recurring_profile_client_id_client')),
        sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_recurring_profile_created_by_id_user')),
        sa.ForeignKeyConstraint(['organization_id'], ['organization.id'],
                                name=op.f('fk_recurring_profile_organization_id_organization')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_profile')),
    )
    op.create_index(op.f('ix_recurring_profile_client_id'), 'recurring_profile', ['client_id'], unique=False)
    op.create_index('ix_recurring_profile_due', 'recurring_profile', ['status', 'next_period_start'], unique=False)
    op.create_index('ix_recurring_profile_org', 'recurring_profile', ['organization_id', 'id'], unique=False)
    op.create_table(
        'recurring_period',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('profile_id', sa.Integer(), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('invoice_id', sa.Integer(), nullable=False),
        sa.Column('created_at', invoicing.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['invoice_id'], ['invoice.id'], name=op.f('fk_recurring_period_invoice_id_invoice')),
        sa.ForeignKeyConstraint(['profile_id'], ['recurring_profile.id'],
                                name=op.f('fk_recurring_period_profile_id_recurring_profile')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_recurring_period')),
        sa.UniqueConstraint('invoice_id', name=op.f('uq_recurring_period_invoice_id')),
        sa.UniqueConstraint('profile_id', 'period_start', name=op.f('uq_recurring_period_profile_id_period_start')),
    )


def _file_current_reminders(conn):
    """Open invoices: the default steps whose day has come (UTC today) count as done."""
    today = date.today()
    cases = " ".join(f"WHEN due_date <= :d{n} THEN {offset}" for n, offset in enumerate(OFFSETS))
    conn.execute(sa.text(f"UPDATE invoice SET reminded_through = CASE {cases} END "
                         "WHERE status IN ('open', 'processing')"),
                 {f"d{n}": today - timedelta(days=offset) for n, offset in enumerate(OFFSETS)})


def downgrade():
    op.drop_table('recurring_period')
    op.drop_index('ix_recurring_profile_org', table_name='recurring_profile')
    op.drop_index('ix_recurring_profile_due', table_name='recurring_profile')
    op.drop_index(op.f('ix_recurring_profile_client_id'), table_name='recurring_profile')
    op.drop_table('recurring_profile')
    op.execute('ALTER TABLE job_run DROP COLUMN last_duration_ms')
    op.execute('ALTER TABLE outbox_email DROP COLUMN open_count')
    op.execute('ALTER TABLE outbox_email DROP COLUMN opened_at')
    op.execute('ALTER TABLE invoice DROP COLUMN reminded_through')
    op.execute('ALTER TABLE invoice DROP COLUMN reminders_paused_at')
    op.execute('ALTER TABLE client DROP COLUMN reminders_opt_out')
    op.execute('ALTER TABLE organization DROP COLUMN track_email_opens')
