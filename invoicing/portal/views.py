from __future__ import annotations

from flask import render_template

from invoicing.portal import bp


@bp.get("/")
def index() -> tuple[str, int]:
    # The portal (contact login, company invoices, saved cards) is its own issue; say so plainly.
    return render_template("placeholder.html", area="Client portal",
                           coming="Contacts will log in here to see every invoice of their company, pay, "
                                  "download PDFs and save a card for autopay."), 501
