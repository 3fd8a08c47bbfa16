"""The JSON API's domain: API keys, idempotency records, what objects look like (present.py), outgoing events
and their delivery to webhook endpoints. The API's state changes themselves go through the same services as
the admin pages (invoices.py, sending.py, payments.py, clients.py)."""
