"""Idempotency-Key on POSTs: a replay returns the first answer and does nothing again; another body with the same
key is a 422; errors are not stored; requests racing with one key make one invoice (a real server, threads)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from invoicing.extensions import db
from invoicing.models import IdempotencyRecord, Invoice, OutboxEmail, Payment
from invoicing.services.api.idempotency import expire
from tests.api.conftest import cid, iid
from tests.conftest import NOW, make_invoice

LINES = [{"description": "Work", "unit_price": 10000}]


def count(model) -> int:
    return int(db.session.execute(select(func.count()).select_from(model)).scalar_one())


def test_it_replays_the_first_answer_for_the_same_key_and_body(api, world):
    body = {"client": cid(world.client_a), "lines": LINES}
    first = api.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "order-1"})
    again = api.post("/api/v1/invoices", data=json.dumps(body, indent=4),  # the same JSON, spaced differently
                     headers={"Idempotency-Key": "order-1", "Content-Type": "application/json"})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert count(Invoice) == 1
    other = api.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "order-2"})
    assert other.status_code == 201 and other.json["id"] != first.json["id"] and count(Invoice) == 2


def test_it_refuses_the_same_key_with_another_body(api, world):
    api.post("/api/v1/invoices", json={"client": cid(world.client_a), "lines": LINES},
             headers={"Idempotency-Key": "k"})
    response = api.post("/api/v1/invoices", json={"client": cid(world.client_a), "lines": LINES, "notes": "x"},
                        headers={"Idempotency-Key": "k"})
    assert response.status_code == 422 and response.json["code"] == "idempotency_key_reused"
    assert count(Invoice) == 1


def test_it_sends_and_records_a_payment_once_per_key(api, world):
    invoice = make_invoice(world.client_a, status="open")
    for _ in range(2):
        assert api.post(f"/api/v1/invoices/{iid(invoice)}/send", json={},
                        headers={"Idempotency-Key": "send-1"}).status_code == 200
        assert api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": 100},
                        headers={"Idempotency-Key": "pay-1"}).status_code == 201
    assert count(OutboxEmail) == 1 and count(Payment) == 1


def test_it_does_not_store_an_error_so_a_fixed_retry_works(api, world):
    invoice = make_invoice(world.client_a, status="open")
    headers = {"Idempotency-Key": "pay-late"}
    refused = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": invoice.total + 1},
                       headers=headers)
    assert refused.status_code == 422 and count(IdempotencyRecord) == 0
    invalid = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": "12"}, headers=headers)
    assert invalid.status_code == 422 and count(IdempotencyRecord) == 0
    other = api.post(f"/api/v1/invoices/{iid(invoice)}/mark-paid", json={"amount": 100}, headers=headers)
    assert other.status_code == 201 and count(Payment) == 1


def test_it_keeps_a_key_for_24_hours(api, world, time_machine):
    time_machine.move_to(NOW, tick=False)
    body = {"client": cid(world.client_a), "lines": LINES}
    api.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "day"})
    time_machine.move_to(NOW + timedelta(hours=23), tick=False)
    assert api.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "day"}).headers.get(
        "Idempotent-Replayed") == "true"
    time_machine.move_to(NOW + timedelta(hours=24, seconds=1), tick=False)
    fresh = api.post("/api/v1/invoices", json=body, headers={"Idempotency-Key": "day"})
    assert "Idempotent-Replayed" not in fresh.headers and count(Invoice) == 2
    assert expire(now=NOW + timedelta(hours=49)) == 1 and count(IdempotencyRecord) == 0


def test_it_scopes_a_key_to_its_api_key(api, keys, world):
    api.post("/api/v1/clients", json={"name": "One"}, headers={"Idempotency-Key": "same"})
    other = api.as_key(keys.other).post("/api/v1/clients", json={"name": "Two"}, headers={"Idempotency-Key": "same"})
    assert other.status_code == 201 and "Idempotent-Replayed" not in other.headers


def test_it_refuses_an_unusable_key_header(api, world):
    response = api.post("/api/v1/clients", json={"name": "x"}, headers={"Idempotency-Key": "x" * 256})
    assert response.status_code == 400 and response.json["errors"][0]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("racers", [6])
def test_it_makes_one_invoice_from_requests_racing_with_one_key(live_server_factory, world, keys, racers):
    server = live_server_factory()
    body = json.dumps({"client": cid(world.client_a), "lines": LINES}).encode()
    start = threading.Barrier(racers)
    answers: list[tuple[int, dict]] = []

    def post() -> None:
        request = urllib.request.Request(f"{server.url}/api/v1/invoices", data=body, method="POST", headers={
            "Authorization": f"Bearer {keys.write}", "Content-Type": "application/json",
            "Idempotency-Key": "race-1"})
        start.wait()
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append((response.status, json.loads(response.read())))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, json.loads(exc.read())))

    threads = [threading.Thread(target=post) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    db.session.rollback()
    assert count(Invoice) == 1
    created = [a for status, a in answers if status == 201]
    assert len(answers) == racers and len(created) == racers, answers  # the others waited and got the replay
    assert {a["id"] for a in created} == {iid(db.session.execute(select(Invoice)).scalar_one())}
