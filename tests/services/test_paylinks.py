from datetime import timedelta

import pytest

from invoicing.extensions import db
from invoicing.services.invoices import void_invoice
from invoicing.services.paylinks import LinkGone, LinkNotFound, link_for, resolve, token_for
from invoicing.services.payments import record_manual_payment
from tests.conftest import NOW, SYSTEM, make_invoice

SECRET = "s" * 40


def test_it_builds_links_from_base_url_with_256_bit_tokens(world):
    invoice = make_invoice(world.client_a, status="open")
    link = link_for(invoice, secret_key=SECRET, base_url="https://billing.example.com/")
    public_id, mac = link.token.split(".")
    assert link.url == f"https://billing.example.com/pay/{link.token}"
    assert len(mac) == 43 and public_id == invoice.public_id  # 32 bytes of HMAC-SHA256, base64url
    assert link.token == token_for(invoice, SECRET)  # staff can copy the same link again
    assert link.token not in str(invoice.__dict__.values())  # nothing secret is stored
    assert resolve(link.token, secret_key=SECRET, today=NOW.date()).id == invoice.id


def test_it_rejects_forged_and_malformed_tokens(world):
    invoice = make_invoice(world.client_a, status="open")
    token = token_for(invoice, SECRET)
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), token_for(invoice, "other" * 10), "x", "a" * 32 + "."):
        with pytest.raises(LinkNotFound):
            resolve(bad, secret_key=SECRET, today=NOW.date())


def test_it_does_not_open_drafts(world):
    draft = make_invoice(world.client_a)
    with pytest.raises(LinkNotFound):
        resolve(token_for(draft, SECRET), secret_key=SECRET, today=NOW.date())


def test_it_revokes_on_void_and_on_rotation(world):
    invoice = make_invoice(world.client_a, status="open")
    old = token_for(invoice, SECRET)
    invoice.link_version += 1
    db.session.commit()
    with pytest.raises(LinkGone, match="replaced"):
        resolve(old, secret_key=SECRET, today=NOW.date())
    current = token_for(invoice, SECRET)
    void_invoice(invoice.id, reason="x", actor=SYSTEM, now=NOW)
    with pytest.raises(LinkGone, match="void"):
        resolve(current, secret_key=SECRET, today=NOW.date())


def test_it_expires_unpaid_links_but_keeps_receipts_reachable(world):
    invoice = make_invoice(world.client_a, status="open")
    token = token_for(invoice, SECRET)
    last_day = invoice.due_date + timedelta(days=30)
    assert resolve(token, secret_key=SECRET, today=last_day).id == invoice.id
    with pytest.raises(LinkGone, match="expired"):
        resolve(token, secret_key=SECRET, today=last_day + timedelta(days=1))
    record_manual_payment(invoice.id, amount=invoice.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)
    assert resolve(token, secret_key=SECRET, today=last_day + timedelta(days=400)).status == "paid"
