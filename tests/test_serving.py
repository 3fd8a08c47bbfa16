"""The app under its real server settings (invoicing/gunicorn_conf.py), the way browsers and clients reach it
with no proxy in front: idle and slow connections, rate limits across the process model, and the log."""

from __future__ import annotations

import http.cookiejar
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.logredact import RedactingGunicornLogger
from invoicing.models import JobRun, OutboxEmail
from invoicing.services.paylinks import token_for
from invoicing.services.sending import send_invoice
from tests.conftest import PASSWORD, SYSTEM, make_invoice
from tests.live_fixture import start_live_server


class Browser:
    """Cookies and the login form's CSRF token, like a browser (the served app checks CSRF)."""

    def __init__(self, url: str):
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def open(self, path: str, data: dict[str, str] | None = None, timeout: float = 10) -> tuple[int, str, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        try:
            with self.opener.open(self.url + path, data=body, timeout=timeout) as response:
                return response.status, response.geturl(), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl(), exc.read().decode()

    def log_in(self, email: str, password: str) -> tuple[int, str, str]:
        form = self.open("/admin/login")[2]
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
        assert token, form
        return self.open("/admin/login", {"csrf_token": token.group(1), "email": email, "password": password})


def _trickle(port: int, stop: threading.Event, sockets: list[socket.socket]) -> None:
    """A slow client: the request line, then one header byte every 0.2 s until told to finish."""
    sock = socket.create_connection(("127.0.0.1", port))
    sockets.append(sock)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow.test\r\n")
    while not stop.wait(0.2):
        sock.sendall(b"X")
    sock.sendall(b"-Slow: 1\r\n\r\n")


def test_it_answers_while_idle_and_trickling_connections_are_held_open(app, live_server_factory, world):
    now = datetime.now(UTC)
    invoice = make_invoice(world.client_a, status="open", now=now, issue_date=now.date())
    pay = f"/pay/{token_for(invoice, app.config['SECRET_KEY'])}"
    server = live_server_factory()
    port = int(server.url.rsplit(":", 1)[1])
    staff = Browser(server.url)
    assert staff.log_in(world.alice.email, PASSWORD)[1].endswith("/admin/")
    for path in ("/healthz", pay, "/admin/invoices"):  # warm: first renders compile templates, fill caches
        assert staff.open(path, timeout=10)[0] == 200

    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]  # pre-connected, never used
    stop = threading.Event()
    slow: list[socket.socket] = []
    tricklers = [threading.Thread(target=_trickle, args=(port, stop, slow)) for _ in range(10)]
    for thread in tricklers:
        thread.start()
    try:
        time.sleep(0.5)  # every slow request is under way
        for _ in range(4):  # and stays so: gunicorn's own per-connection wait is 5 s
            for path, expected in (("/healthz", '"ok"'), (pay, invoice.number), ("/admin/invoices", invoice.number)):
                started = time.monotonic()
                status, url, body = staff.open(path, timeout=5)
                elapsed = time.monotonic() - started
                assert (status, url) == (200, server.url + path) and expected in body
                assert elapsed < 1.0, f"{path} took {elapsed:.2f} s with 50 idle and 10 slow connections open"
            time.sleep(1)
        assert len(slow) == 10 and all(thread.is_alive() for thread in tricklers)
    finally:
        stop.set()
        for thread in tricklers:
            thread.join()
        answers = []
        for sock in slow:
            sock.settimeout(10)
            answers.append(sock.recv(100))
            sock.close()
        for sock in idle:
            sock.close()
    assert all(answer.startswith(b"HTTP/1.1 200") for answer in answers)  # slow clients are served too


def test_it_refuses_the_sixth_login_attempt_a_minute_across_the_served_app(live_server_factory, world):
    server = live_server_factory(RATELIMIT_ENABLED="1", RATELIMIT_STORAGE_URI="memory://")  # the default, own server
    statuses = [Browser(server.url).log_in(world.alice.email, "wrong password")[0] for _ in range(5)]
    assert statuses == [400] * 5
    browser = Browser(server.url)
    status, _url, body = browser.log_in(world.alice.email, PASSWORD)  # even the right password now
    assert status == 429 and "5 per 1 minute" in body
    assert browser.open("/admin/invoices")[1].startswith(server.url + "/admin/login")
    assert Browser(server.url).log_in(world.bob.email, PASSWORD)[1] == server.url + "/admin/"  # per email


def test_it_logs_a_line_per_job_that_did_something_and_keeps_tokens_and_chatter_out(
    app, world, smtp, tmp_path
):
    now = datetime.now(UTC)
    draft = make_invoice(world.client_a, now=now, issue_date=now.date())
    server = start_live_server(app, tmp_path / "gunicorn.log", SCHEDULER_ENABLED="1", MAIL_SERVER=smtp.host,
                               MAIL_PORT=str(smtp.port), MAIL_USE_TLS="0")
    try:
        invoice = send_invoice(draft.id, actor=SYSTEM, now=now, base_url=server.url,
                               secret_key=app.config["SECRET_KEY"], default_sender="billing@a.test")
        token = token_for(invoice, app.config["SECRET_KEY"])
        with urllib.request.urlopen(f"{server.url}/pay/{token}", timeout=10) as response:
            assert response.status == 200
        [message] = smtp.wait_for(1, timeout=40)  # the scheduler's deliver-mail ticks every 15 s
        assert invoice.number in message["Subject"] and list(message.iter_attachments())  # PDF rendered
        deadline = time.monotonic() + 10
        while "deliver-mail: 1 sent" not in (log := server.log()) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    db.session.rollback()  # a fresh snapshot: the served process wrote meanwhile
    assert db.session.execute(select(OutboxEmail.status)).scalar_one() == "sent"
    lease = db.session.get(JobRun, "deliver-mail")
    assert lease is not None and lease.last_outcome.startswith("deliver-mail: 1 sent")
    job_lines = [line for line in log.splitlines() if "invoicing.jobs: job " in line]  # idle ticks leave no line
    assert len(job_lines) == 1, log
    assert re.search(r"INFO invoicing\.jobs: job deliver-mail slot \S+: deliver-mail: 1 sent, 0 to retry", job_lines[0])
    assert '"GET /pay/<token> HTTP/1.1" 200' in log and token not in log and token.split(".")[1] not in log
    for chatter in ("apscheduler", "Running job", "executed successfully", "weasyprint", "fontTools", "Step "):
        assert chatter not in log, chatter


def test_it_logs_a_silent_client_without_a_traceback_and_redacts_tokens_at_debug(capsys):
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("loglevel", "debug")
    logger = RedactingGunicornLogger(cfg)
    try:
        raise TimeoutError("timed out")  # gunicorn_conf.SOCKET_TIMEOUT: a client stopped sending mid-request
    except TimeoutError:
        logger.exception("Socket error processing request.")
    logger.debug("%s %s", "GET", "/pay/abc123.secretmac")  # what gunicorn logs per request at debug
    try:
        raise ValueError("a real bug")
    except ValueError:
        logger.exception("Error handling request")
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: a real bug" in err and "TimeoutError" not in err
    assert "closed a connection whose client went silent" in err
    assert "GET /pay/<token>" in err and "secretmac" not in err
