"""Organization settings: admins only, every field validated, all or nothing, logos checked by content."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from invoicing.extensions import db
from invoicing.models import AuditEvent, Organization
from tests.conftest import login, make_user

VALID: dict[str, Any] = {
    "name": "Org A Renamed", "address": "1 Main St\nSpringfield", "phone": "+1 555 0100",
    "website": "https://org-a.test", "sender_email": "Accounts@Org-A.test", "brand_color": "#112233",
    "accent_color": "#AABBCC", "default_currency": "eur", "payment_terms_days": "14",
    "number_format": "INV-{year}-{seq:05d}", "timezone": "Europe/Paris", "allow_partial_payments": "y",
    "min_partial_amount": "12.50", "payment_instructions": "IBAN FR76 0000",
}


def image_bytes(fmt: str, size: tuple[int, int] = (120, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "#336699").save(out, fmt)
    return out.getvalue()


def org(org_id: int) -> Organization:
    db.session.rollback()
    return db.session.get_one(Organization, org_id)


def post(client, data: dict[str, Any], logo: tuple[bytes, str] | None = None):
    form = dict(data)
    if logo is not None:
        form["logo"] = (io.BytesIO(logo[0]), logo[1])
    response = client.post("/admin/settings", data=form, content_type="multipart/form-data")
    response.request.input_stream.close()  # werkzeug's test client leaves a big body's temp file open
    return response


def test_it_shows_the_current_settings_to_an_admin(client, world):
    login(client, world.alice)
    page = client.get("/admin/settings").text
    assert 'value="Org A"' in page and '<option selected value="America/New_York">' in page
    assert 'value="#1f4e79"' in page and "checked" in page  # partial payments are on for org A


def test_it_saves_every_setting_and_audits_what_changed(client, world):
    login(client, world.alice)
    response = post(client, VALID)
    assert response.status_code == 303, response.text
    saved = org(world.org_a.id)
    assert (saved.name, saved.address, saved.sender_email) == ("Org A Renamed", "1 Main St\nSpringfield",
                                                               "accounts@org-a.test")
    assert (saved.brand_color, saved.accent_color, saved.default_currency) == ("#112233", "#aabbcc", "EUR")
    assert (saved.payment_terms_days, saved.number_format, saved.timezone) == (14, "INV-{year}-{seq:05d}",
                                                                                "Europe/Paris")
    assert (saved.allow_partial_payments, saved.min_partial_amount) == (True, 1250)
    assert saved.payment_instructions == "IBAN FR76 0000" and saved.website == "https://org-a.test"
    [event] = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "organization.settings_updated")).scalars()
    assert event.actor_label == world.alice.email and "timezone" in event.details["changed"]
    assert "Settings saved." in client.get("/admin/settings").text


@pytest.mark.parametrize(("field", "value", "message"), [
    ("brand_color", "red", "Use a colour like #1f4e79."),
    ("accent_color", "#12345g", "Use a colour like #1f4e79."),
    ("timezone", "Mars/Olympus", "is not a known time zone"),
    ("timezone", "../../etc/passwd", "is not a known time zone"),
    ("number_format", "{client}-{seq}", "must use {year} and {seq}"),
    ("number_format", "INV-{year}", "must contain {seq}"),
    ("default_currency", "XXY", "not an ISO 4217 currency code"),
    ("payment_terms_days", "400", "Number must be between 0 and 365"),
    ("payment_terms_days", "soon", "Not a valid integer value"),
    ("sender_email", "not-an-email", "is not a valid email address"),
    ("min_partial_amount", "a lot", "is not an amount"),
    ("min_partial_amount", "1.234", "at most 2 decimals"),
    ("name", "", "This field is required"),
])
def test_it_refuses_a_bad_value_with_a_message_and_writes_nothing(client, world, field, value, message):
    login(client, world.alice)
    response = post(client, {**VALID, field: value})
    assert response.status_code == 400
    assert message in response.text and "Nothing was saved" in response.text
    saved = org(world.org_a.id)
    assert (saved.name, saved.timezone, saved.brand_color) == ("Org A", "America/New_York", "#1f4e79")
    assert db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "organization.settings_updated")).first() is None


def test_it_reports_every_bad_field_at_once(client, world):
    login(client, world.alice)
    response = post(client, {**VALID, "brand_color": "blue", "timezone": "Nowhere", "number_format": "x"})
    assert response.status_code == 400
    assert response.text.count('role="alert" id=') == 3


@pytest.mark.parametrize(("fmt", "stored"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/png")])
def test_it_stores_a_reencoded_logo(client, world, fmt, stored):
    login(client, world.alice)
    response = post(client, VALID, logo=(image_bytes(fmt), "logo.bin"))
    assert response.status_code == 303, response.text
    saved = org(world.org_a.id)
    assert saved.logo_mime == stored and saved.logo is not None
    with Image.open(io.BytesIO(saved.logo)) as image:
        assert image.size == (120, 40)
    logo = client.get("/admin/settings/logo")
    assert logo.status_code == 200 and logo.mimetype == stored


def test_it_scales_a_big_logo_down(client, world):
    login(client, world.alice)
    assert post(client, VALID, logo=(image_bytes("PNG", (2000, 500)), "wide.png")).status_code == 303
    with Image.open(io.BytesIO(org(world.org_a.id).logo or b"")) as image:
        assert image.size == (800, 200)


@pytest.mark.parametrize(("content", "filename", "message"), [
    (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "logo.svg",
     "must be a PNG, JPEG or WebP image"),
    (b"GIF89a" + b"\x00" * 64, "logo.png", "must be a PNG, JPEG or WebP image"),
    (b"just text, named like a picture", "logo.png", "must be a PNG, JPEG or WebP image"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * (512 * 1024), "big.png", "at most 512 KB"),
])
def test_it_refuses_a_logo_that_is_not_a_small_png_jpeg_or_webp(client, world, content, filename, message):
    login(client, world.alice)
    response = post(client, VALID, logo=(content, filename))
    assert response.status_code == 400 and message in response.text
    saved = org(world.org_a.id)
    assert saved.logo is None and saved.name == "Org A"  # the valid fields were not saved either


def test_it_refuses_a_gif_even_though_it_is_an_image(client, world):
    out = io.BytesIO()
    Image.new("RGB", (10, 10)).save(out, "GIF")
    login(client, world.alice)
    response = post(client, VALID, logo=(out.getvalue(), "logo.gif"))
    assert response.status_code == 400 and "must be a PNG, JPEG or WebP image" in response.text


def test_it_removes_the_logo(client, world):
    world.org_a.logo, world.org_a.logo_mime = image_bytes("PNG"), "image/png"
    db.session.commit()
    login(client, world.alice)
    assert post(client, {**VALID, "remove_logo": "y"}).status_code == 303
    assert org(world.org_a.id).logo is None


def test_it_forbids_staff(client, world):
    sam = make_user(world.org_a, "sam@a.test", "staff")
    login(client, sam)
    assert client.get("/admin/settings").status_code == 403
    assert post(client, VALID).status_code == 403
    assert org(world.org_a.id).name == "Org A"


def test_it_sends_anonymous_visitors_to_the_login(client, world):
    response = client.get("/admin/settings")
    assert response.status_code == 302 and "/admin/login" in response.location


def test_it_asks_a_superadmin_to_choose_an_organization_first(client, world):
    login(client, world.root)
    response = client.get("/admin/settings")
    assert response.status_code == 303 and response.location.endswith("/admin/organization")
    client.post("/admin/organization", data={"organization_id": str(world.org_b.id)})
    assert 'value="Org B"' in client.get("/admin/settings").text
    assert post(client, {**VALID, "name": "Org B Renamed"}).status_code == 303
    assert org(world.org_b.id).name == "Org B Renamed" and org(world.org_a.id).name == "Org A"
