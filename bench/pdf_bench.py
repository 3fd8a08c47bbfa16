"""Invoice PDF rendering: median time for a 1-page and a 3-page invoice, peak memory, and a cache hit.

    .venv/bin/python -m bench.pdf_bench [--runs 7]

Each size runs in a fresh process (so peak RSS is that size's own) against a throwaway SQLite database:
the invoice is made with the real services, then `pdf.html_to_pdf(pdf.render_html(...))` is timed `--runs`
times (template + WeasyPrint, no cache), and `pdf.invoice_pdf` twice (first stores, second is a cache hit).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINES = {1: 6, 3: 55}  # line items that give a 1-page and a 3-page invoice with the default template


def measure(pages: int, runs: int) -> dict[str, float]:
    started = time.perf_counter()
    import weasyprint  # noqa: F401  (timed: the import alone is most of a first render)

    import_s = time.perf_counter() - started
    from flask_migrate import upgrade
    from pypdf import PdfReader

    from invoicing import create_app, pdf
    from invoicing.services.audit import Actor
    from invoicing.services.invoices import DraftData, LineData, create_draft, finalize_invoice
    from invoicing.services.users import create_organization

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.db", "SECRET_KEY": "b" * 40,
                          "BASE_URL": "https://billing.example.com"})
        with app.app_context():
            upgrade(revision="heads")
            now, actor = datetime.now(UTC), Actor.system("bench")
            org = create_organization("Northwind Studio", now=now, actor=actor, address="42 Harbour Road\nPortland",
                                      payment_instructions="Bank transfer: IBAN US00 0000 0000 0000")
            from invoicing.extensions import db
            from invoicing.models import Client

            client = Client(organization_id=org.id, name="Acme Corporation", email="ap@acme.example",
                            address="1 Main Street\nSpringfield", currency="USD")
            db.session.add(client)
            db.session.commit()
            lines = tuple(LineData(f"Design work, week {n}: research, wireframes and review", Decimal("1.5"),
                                   12_500, Decimal("8.25")) for n in range(1, LINES[pages] + 1))
            today = now.date()
            draft = create_draft(org, DraftData(client.id, "USD", today, today + timedelta(days=30), lines,
                                                "percent", 500, "Thank you for your business."), actor=actor, now=now)
            invoice = finalize_invoice(draft.id, actor=actor, now=now)
            url = pdf.pay_url_for(invoice)
            times, content = [], b""
            for _ in range(runs):
                started = time.perf_counter()
                content = pdf.html_to_pdf(pdf.render_html(invoice, url))
                times.append(time.perf_counter() - started)
            got_pages = len(PdfReader(io.BytesIO(content)).pages)
            if got_pages != pages:
                raise SystemExit(f"expected a {pages}-page invoice, got {got_pages} pages: adjust LINES")
            started = time.perf_counter()
            pdf.invoice_pdf(invoice)
            store_s = time.perf_counter() - started
            started = time.perf_counter()
            pdf.invoice_pdf(invoice)
            hit_s = time.perf_counter() - started
    return {
        "pages": got_pages, "lines": LINES[pages], "import_s": import_s, "median_s": statistics.median(times),
        "min_s": min(times), "first_s": times[0], "render_and_store_s": store_s, "cache_hit_s": hit_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "bytes": len(content),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pages", type=int, choices=sorted(LINES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pages:
        print(json.dumps(measure(args.pages, args.runs)))
        return
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING"}
    print(f"{'invoice':<10}{'lines':>6}{'pages':>6}{'median':>9}{'min':>8}{'first':>8}{'cache hit':>11}"
          f"{'import':>8}{'peak RSS':>10}{'size':>9}")
    for pages in sorted(LINES):
        out = subprocess.run([sys.executable, "-m", "bench.pdf_bench", "--pages", str(pages), "--runs",
                              str(args.runs)], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{pages}-page{'':<4}{r['lines']:>6}{r['pages']:>6}{r['median_s'] * 1000:>7.0f}ms"
              f"{r['min_s'] * 1000:>6.0f}ms{r['first_s'] * 1000:>6.0f}ms{r['cache_hit_s'] * 1000:>9.1f}ms"
              f"{r['import_s'] * 1000:>6.0f}ms"
              f"{r['peak_rss_mib']:>7.0f}MiB{r['bytes'] / 1024:>7.0f}KB")


if __name__ == "__main__":
    main()
