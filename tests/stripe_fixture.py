"""pytest plugin: a session-scoped Stripe-compatible test server (tests/stripe_server.py, localstripe-based).

List it in conftest.py: ``pytest_plugins = ["tests.stripe_fixture"]``. Helpers use only the stdlib.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

LAUNCHER = Path(__file__).with_name("stripe_server.py")
START_TIMEOUT = 60.0  # ready as soon as it answers; a loaded CI box (both suites, several workers) is slow


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError carrying the 3xx response


_opener = urllib.request.build_opener(_NoRedirect)


class StripeServer:
    """Handle on the running test server. Point the SDK at ``base_url`` with ``api_key``."""

    def __init__(self, base_url: str, api_key: str = "sk_test_localstripe_launcher") -> None:
        self.base_url = base_url
        self.api_key = api_key

    def request(self, method: str, path: str, data: dict[str, Any] | None = None,
                json_body: Any = None, auth: bool = False) -> tuple[int, dict[str, str], bytes]:
        """Raw HTTP call; returns (status, headers, body) and never raises on HTTP errors or redirects."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if auth else {}
        body = None
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif data is not None:
            body = urllib.parse.urlencode(data, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        req = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        try:
            with _opener.open(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            with e:
                return e.code, dict(e.headers), e.read()

    def _ok(self, method: str, path: str, **kwargs: Any) -> bytes:
        status, _, body = self.request(method, path, **kwargs)
        if status >= 300:
            raise RuntimeError(f"{method} {path} -> HTTP {status}: {body.decode(errors='replace')}")
        return body

    def register_webhook(self, url: str, secret: str, id: str = "default",
                         events: list[str] | None = None) -> None:
        """Deliver signed events to ``url``; registering the same ``id`` again replaces it."""
        data: dict[str, Any] = {"url": url, "secret": secret}
        if events is not None:
            data["events[]"] = list(events)
        self._ok("POST", f"/_config/webhooks/{id}", data=data)

    def unregister_webhooks(self, id: str | None = None) -> None:
        """Stop delivering; returns once a delivery already in flight has been answered."""
        self._ok("DELETE", "/_config/webhooks" + (f"/{id}" if id else ""))

    def reset(self) -> None:
        """Clear faults (webhook settings too), then all data, idempotency keys and undelivered events.
        Webhook registrations are kept."""
        self.clear_faults()
        self._ok("DELETE", "/_config/data")

    def fault(self, **spec: Any) -> dict[str, Any]:
        """e.g. fault(path_prefix="/v1/checkout/sessions", method="POST", mode="drop_after", count=1),
        fault(webhooks="pause"), fault(webhook_duplicates=2), fault(webhook_delay=0.5)."""
        return json.loads(self._ok("POST", "/_config/faults", json_body=spec))

    def clear_faults(self) -> None:
        self._ok("DELETE", "/_config/faults")

    def settle(self, session_id: str, outcome: str = "succeeded") -> dict[str, Any]:
        """Settle a session paid with the settles-later card; returns the session JSON."""
        body = self._ok("POST", f"/_config/checkout/{session_id}/settle", data={"outcome": outcome})
        return json.loads(body)

    def fail_refund(self, refund_id: str, failure_reason: str = "expired_or_canceled_card",
                    status: str = "failed") -> dict[str, Any]:
        """Make a refund fail (or be canceled) after the fact, as card networks do; the server emits
        refund.updated, charge.refund.updated and (when failed) refund.failed. Returns the refund JSON."""
        body = self._ok("POST", f"/_config/refunds/{refund_id}/fail",
                        data={"status": status, "failure_reason": failure_reason})
        return json.loads(body)

    def script_charges(self, payment_method_id: str, *outcomes: str) -> None:
        """What the card's next off-session charges do, one outcome each: "succeeded" or a decline code
        (insufficient_funds, generic_decline, lost_card, expired_card, authentication_required...)."""
        self._ok("POST", f"/_config/payment_methods/{payment_method_id}/outcomes",
                 json_body={"outcomes": list(outcomes)})

    def count(self, kind: str = "payment_intents") -> int:
        """How many objects of a kind the server holds (payment_intents, charges, refunds...)."""
        return int(json.loads(self._ok("GET", "/_config/counts"))[kind])

    def checkout_url(self, session_id: str) -> str:
        return f"{self.base_url}/_config/checkout/{session_id}"

    def pay(self, session_id: str, card: str = "4242424242424242",
            email: str = "payer@example.com") -> str | None:
        """Submit the hosted page form. Returns the redirect URL (success_url) without following it, or
        None if the card was refused (402: declined / incorrect number). Raises on anything else."""
        status, headers, body = self.request("POST", f"/_config/checkout/{session_id}/pay",
                                             data={"card": card, "email": email})
        if status in (302, 303):
            return headers["Location"]
        if status == 402:
            return None
        raise RuntimeError(f"paying {session_id} -> HTTP {status}: {body.decode(errors='replace')}")


def _start(tmpdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    out_path, err_path = tmpdir / "stdout.log", tmpdir / "stderr.log"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen([sys.executable, str(LAUNCHER), "--port", "0"], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, cwd=str(LAUNCHER.parent))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        line = out_path.read_text().partition("\n")[0]
        if line.startswith("READY "):
            base_url = line.split()[1]
            try:
                with urllib.request.urlopen(base_url + "/_config/health", timeout=2) as resp:
                    if resp.read() == b"stripe_server ok":
                        return proc, base_url
            except OSError:
                pass
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    pytest.fail(f"tests/stripe_server.py failed to start within {START_TIMEOUT:.0f} s (exit code "
                f"{proc.returncode}).\nstdout:\n{out_path.read_text()}\n"
                f"stderr:\n{err_path.read_text()}", pytrace=False)


@pytest.fixture(scope="session")
def stripe_server(tmp_path_factory: pytest.TempPathFactory):
    proc, base_url = _start(tmp_path_factory.mktemp("stripe_server"))
    try:
        yield StripeServer(base_url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
