"""The scheduler's billing work: automatic reminders (reminders.py), recurring invoices (recurring.py), email
open tracking (opens.py), the Scheduler page's health and 24-hour preview (schedule_preview.py), and the hooks
autopay will fill in (autopay.py). Each job is also `flask billing <job> [--dry-run]`."""
