"""/api/v1/payments: every payment of the organization (provider and manual), with its refunds."""

from __future__ import annotations

from typing import Any

from invoicing.api import answer, bp
from invoicing.api import schemas as s
from invoicing.api.auth import api_key
from invoicing.api.docs import errors
from invoicing.services.api import present
from invoicing.services.api import resources as res


@bp.get("/payments")
@bp.arguments(s.PaymentQuery, location="query", unknown="raise")
@bp.response(200, s.PaymentListOut)
@errors(401, 422)
def list_payments(query: dict[str, Any]) -> Any:
    """List payments, newest first, by client, invoice, method, status or the day they were recorded."""
    page = res.list_payments(api_key().organization, query)
    return answer({"object": "list", "data": [present.payment_dict(p) for p in page.items],
                   "has_more": page.next_cursor is not None, "next_cursor": page.next_cursor})


@bp.get("/payments/<payment_id>")
@bp.response(200, s.PaymentOut)
@errors(401, 404)
def get_payment(payment_id: str) -> Any:
    """Get a payment with its refunds."""
    return answer(present.payment_dict(res.get_payment(api_key().organization_id, payment_id)))
