"""Amounts through the whole path (hosted checkout, webhook, ledger) stay exact: USD, EUR, JPY and KWD."""

from __future__ import annotations

import pytest

from tests.conftest import make_client
from tests.pay.support import assert_invariants, fresh, live_invoice, stripe_object
from tests.reliability.helpers import open_checkout, settled_payments


@pytest.mark.parametrize("currency", ["USD", "EUR", "JPY", "KWD"])
def test_it_round_trips_the_amount_exactly(stripe_server, stripe_live, world, currency):
    invoice = live_invoice(make_client(world.org_b, f"{currency} Co", currency=currency))
    assert invoice.total == 27000  # $270.00, €270.00, ¥27,000, KWD 27.000
    started = open_checkout(stripe_server, stripe_live, invoice)
    remote = stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}")
    assert (remote["amount_total"], remote["currency"]) == (27000, currency.lower())
    stripe_server.pay(started.session_id)
    payment, = settled_payments(invoice)
    assert (payment.amount, payment.currency, fresh(invoice).amount_paid, fresh(invoice).status) == (
        27000, currency, 27000, "paid")
    assert_invariants()
