"""WSGI entry point for gunicorn: `gunicorn wsgi:app`. The scheduler starts here, never in `flask` commands."""

from invoicing import create_app
from invoicing.jobs import start_scheduler

app = create_app()
if app.config["SCHEDULER_ENABLED"]:
    start_scheduler(app)
