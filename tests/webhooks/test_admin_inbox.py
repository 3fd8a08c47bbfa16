"""/admin/webhooks: staff see the inbox (scoped to their organization) and re-apply a failed event."""

from __future__ import annotations

from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import WebhookEvent
from invoicing.services.checkout import start_checkout
from invoicing.services.inbox import receive
from tests.conftest import NOW, login, make_invoice
from tests.pay.support import (
    event_body,
    payment_inserts_fail,
    payments_of,
    site,
    stripe_gateway,
    stripe_object,
    stripe_signature,
)


def failed_event(stripe_server, invoice) -> WebhookEvent:
    gateway = stripe_gateway(stripe_server)
    started = start_checkout(invoice.id, amount=27000, gateway=gateway, site=site(), now=NOW)
    stripe_server.pay(started.session_id)
    raw = event_body("checkout.session.completed",
                     stripe_object(stripe_server, f"/v1/checkout/sessions/{started.session_id}"), "evt_admin")
    with payment_inserts_fail():
        receive("stripe", raw, stripe_signature(raw), gateway=gateway, site=site(), now=NOW)
    return db.session.scalar(select(WebhookEvent))


def test_it_lists_events_with_status_and_error_and_reapplies_a_failed_one(client, world, stripe_app):
    invoice = make_invoice(world.client_a, status="open")
    event = failed_event(stripe_app, invoice)
    login(client, world.alice)
    page = client.get("/admin/webhooks?status=failed")
    assert page.status_code == 200
    assert "checkout.session.completed" in page.text and "injected fault" in page.text and invoice.number in page.text
    assert "Re-apply" in page.text
    detail = client.get(f"/admin/webhooks/{event.id}")
    assert detail.status_code == 200 and "evt_admin" in detail.text and "&#34;payment_status&#34;: &#34;paid&#34;" \
        in detail.text

    response = client.post(f"/admin/webhooks/{event.id}/reapply")
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/webhooks/{event.id}"
    assert "evt_admin: processed" in client.get(response.headers["Location"]).text
    assert [p.status for p in payments_of(invoice)] == ["succeeded"]
    again = client.post(f"/admin/webhooks/{event.id}/reapply")
    assert "already processed" in client.get(again.headers["Location"]).text
    assert len(payments_of(invoice)) == 1


def test_it_hides_other_organizations_events(client, world, stripe_app):
    event = failed_event(stripe_app, make_invoice(world.client_a, status="open"))
    login(client, world.bob)
    assert "checkout.session.completed" not in client.get("/admin/webhooks").text
    assert client.get(f"/admin/webhooks/{event.id}").status_code == 404
    assert client.post(f"/admin/webhooks/{event.id}/reapply").status_code == 404
    assert db.session.scalar(select(WebhookEvent.status)) == "failed"


def test_a_superadmin_sees_every_event(client, world, stripe_app):
    failed_event(stripe_app, make_invoice(world.client_b, status="open"))
    login(client, world.root)
    assert "checkout.session.completed" in client.get("/admin/webhooks").text


def test_it_needs_a_staff_login(client):
    assert client.get("/admin/webhooks").status_code == 302
