"""GET /api/v1/stats: the reports service's figures for the key's organization, per currency, for a period."""

from __future__ import annotations

from invoicing.services.payments import record_manual_payment
from tests.api.conftest import cid, problem_fields
from tests.conftest import NOW, SYSTEM, make_client, make_invoice

MARCH = {"period": "custom", "from": "2026-03-01", "to": "2026-03-31"}


def test_it_gives_the_organizations_figures_per_currency(api, world):
    usd = make_invoice(world.client_a, status="open")
    other = make_invoice(world.client_a, status="open")
    euro = make_invoice(make_client(world.org_a, "Euro Client", currency="EUR"), status="open", currency="EUR")
    record_manual_payment(usd.id, amount=usd.total, method="bank_transfer", paid_on=NOW.date(), reference="B1",
                          actor=SYSTEM, now=NOW)
    theirs = make_invoice(world.client_b, status="open")  # org B's: never in org A's figures
    record_manual_payment(theirs.id, amount=theirs.total, method="cash", paid_on=NOW.date(), reference="",
                          actor=SYSTEM, now=NOW)

    response = api.get("/api/v1/stats", query_string=MARCH)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["object"] == "stats" and body["period"]["from"] == "2026-03-01"
    assert body["period"]["time_zone"] == world.org_a.timezone
    by_currency = {c["currency"]: c for c in body["currencies"]}
    assert set(by_currency) == {"USD", "EUR"}  # never summed across currencies; org B's JPY absent
    cards = by_currency["USD"]["cards"]
    assert cards["invoiced"] == {"count": 2, "amount": usd.total + other.total}
    assert cards["collected"]["amount"] == usd.total and cards["collected"]["count"] == 1
    assert by_currency["EUR"]["cards"]["invoiced"] == {"count": 1, "amount": euro.total}
    methods = {m["method"]: m["amount"] for m in by_currency["USD"]["methods"]}
    assert methods.get("bank_transfer") == usd.total
    assert [c["client"] for c in by_currency["USD"]["top_collected"]] == [cid(world.client_a)]

    only_euro = api.get("/api/v1/stats", query_string={**MARCH, "currency": "eur"}).json
    assert [c["currency"] for c in only_euro["currencies"]] == ["EUR"]


def test_it_refuses_bad_filters_and_other_organizations_clients(api, world, keys):
    assert api.get("/api/v1/stats", key=None).status_code == 401
    response = api.get("/api/v1/stats", query_string={"period": "custom", "from": "2026-03-31", "to": "2026-03-01"})
    assert response.status_code == 422 and list(problem_fields(response)) == ["to"]
    response = api.get("/api/v1/stats", query_string={"period": "fortnight", "extra": "1"})
    assert response.status_code == 422 and set(problem_fields(response)) == {"period", "extra"}
    response = api.get("/api/v1/stats", query_string={"client": cid(world.client_b)})
    assert response.status_code == 422 and list(problem_fields(response)) == ["client"]
    assert api.get("/api/v1/stats", key=keys.read).status_code == 200  # a read key may read figures
