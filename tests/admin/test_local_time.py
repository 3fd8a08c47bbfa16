"""One rule for every time shown to people: the organization's time zone, labelled with its abbreviation."""

from __future__ import annotations

from invoicing.extensions import db
from tests.conftest import NOW, login, make_invoice
from tests.pay.support import pay_path, receipts

BERLIN = "10 Mar 2026, 16:00 CET"  # NOW, 15:00 UTC, in Europe/Berlin


def test_it_shows_the_same_labelled_local_time_on_every_page_and_in_the_email(client, world, time_machine):
    time_machine.move_to(NOW, tick=False)
    world.org_a.timezone = "Europe/Berlin"
    db.session.commit()
    invoice = make_invoice(world.client_a, status="open")
    checkout = client.post(pay_path(invoice)).headers["Location"].removeprefix("http://billing.test")
    paid = client.post(checkout, data={"card": "4242 4242 4242 4242", "email": "payer@clienta.test"})
    assert paid.status_code == 303
    [receipt] = receipts()
    assert f"Date:           {BERLIN}" in receipt.text_body and BERLIN in receipt.html_body

    login(client, world.alice)
    outbox = client.get("/admin/outbox").text
    assert f"<td>{BERLIN}</td>" in outbox and "UTC" not in outbox
    assert f"<dd>{BERLIN}</dd>" in client.get(f"/admin/outbox/{receipt.id}").text
    timeline = client.get(f"/admin/invoices/{invoice.id}").text
    assert timeline.count(f"<time>{BERLIN}</time>") >= 3  # finalized, checkout started, paid
    inbox = client.get("/admin/webhooks").text
    assert inbox.count(f"{BERLIN}</a>") == 2  # the provider's two events
    assert "15:00" not in outbox + timeline + inbox  # no UTC time anywhere, labelled or not
