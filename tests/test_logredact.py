import logging
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

from invoicing.logredact import RedactingFilter, redact
from invoicing.services.paylinks import token_for
from tests.conftest import make_invoice


def test_it_keeps_pay_tokens_out_of_the_access_log(app, live_server_factory, world):
    now = datetime.now(UTC)
    invoice = make_invoice(world.client_a, status="open", now=now, issue_date=now.date())
    token = token_for(invoice, app.config["SECRET_KEY"])
    server = live_server_factory()
    request = urllib.request.Request(f"{server.url}/pay/{token}", headers={"Referer": f"{server.url}/pay/{token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and invoice.number in response.read().decode()
    deadline = time.monotonic() + 10
    while "/pay/" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)  # gunicorn writes the access line after the response
    assert "GET /pay/<token> HTTP/1.1\" 200" in log
    assert token not in log and token.split(".")[1] not in log


def test_it_redacts_tokens_in_the_apps_own_log_records():
    record = logging.LogRecord("flask.app", logging.ERROR, __file__, 1, "Exception on %s [%s]",
                               ("/pay/abc123.secretmac/return", "GET"), None)
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "Exception on /pay/<token>/return [GET]"
    assert redact("/pay/sandbox/cs_sbx_1") == "/pay/sandbox/cs_sbx_1"
    assert redact('"POST /admin/invite/eyJ1IjozfQ.mac HTTP/1.1" 303') == '"POST /admin/invite/<token> HTTP/1.1" 303'


def test_it_keeps_invitation_tokens_out_of_the_access_log(app, live_server_factory, world):
    from invoicing.services.invites import invitation_token
    from tests.conftest import make_user

    user = make_user(world.org_a, "someone@a.test", "staff")
    token = invitation_token(user, secret_key=app.config["SECRET_KEY"], now=datetime.now(UTC))
    server = live_server_factory()
    try:  # this user already has a password, so the link answers 410: what matters here is the log line
        urllib.request.urlopen(f"{server.url}/admin/invite/{token}", timeout=10)
    except urllib.error.HTTPError as exc:
        assert exc.code == 410
    deadline = time.monotonic() + 10
    while "/admin/invite/" not in (log := server.log()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "GET /admin/invite/<token> HTTP/1.1" in log and token not in log and token.split(".")[-1] not in log
