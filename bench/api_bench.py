"""The JSON API under load: GET /api/v1/invoices (50 of 100,000) and POST /api/v1/invoices, as ratios to a bare
Flask "hello" served the same way in the same run (the method of bench/list_bench.py, whose seed it reuses).

    DATABASE_URL=sqlite:////tmp/bench.db .venv/bin/python -m bench.api_bench
    createdb -h 127.0.0.1 -U postgres bench && \\
    DATABASE_URL=postgresql://postgres@127.0.0.1/bench .venv/bin/python -m bench.api_bench

`--keep` reuses a database seeded by either bench. The rate limiter stays on (memory storage, a limit no run
reaches), as in production. Each POST carries its own Idempotency-Key, as a careful client's would, so the
figure includes the claim of the key; each creates a draft of two lines. Figures: req/s, p50, p99, ratio to
hello, and the median of 200 requests one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from bench.list_bench import _app, reset_schema, seed, sequential, serve

ROOT = Path(__file__).resolve().parents[1]
LIST = "/api/v1/invoices?limit=50"


def api_key_and_client() -> tuple[str, str]:
    """A read-and-write key of the seeded organization, and the id of one of its clients."""
    from sqlalchemy import select

    from invoicing.extensions import db
    from invoicing.models import Client
    from invoicing.services.api.keys import create_key
    from invoicing.services.audit import Actor

    app = _app()
    with app.app_context():
        client = db.session.execute(select(Client).order_by(Client.id).limit(1)).scalar_one()
        token = create_key(client.organization_id, name="bench", scopes=["read", "write"], expires_at=None,
                           live=False, actor=Actor.system("bench"), now=datetime.now(UTC)).token
        return token, f"cli_{client.public_id}"


POST_SCRIPT = """
counter = 0
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
request = function()
  counter = counter + 1
  local headers = {}
  for name, value in pairs(wrk.headers) do headers[name] = value end
  headers["Idempotency-Key"] = "bench-" .. os.time() .. "-" .. math.random(1e9) .. "-" .. counter
  return wrk.format(nil, nil, headers)
end
"""


def wrk(url: str, *, headers: dict[str, str] | None = None, script: str | None = None) -> dict[str, float]:
    cmd = ["wrk", "-t2", "-c16", "-d10s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors for {url}:\n{out}")

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            raise SystemExit(f"cannot read {label} from wrk:\n{out}")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50": ms("50%"), "p99": ms("99%")}


def post_sequential(url: str, token: str, body: bytes, n: int = 200) -> float:
    times = []
    for i in range(n):
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json",
            "Idempotency-Key": f"seq-{time.time_ns()}-{i}"})
        start = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            response.read()
            if response.status != 201:
                raise SystemExit(f"POST answered {response.status}")
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=1_000)
    parser.add_argument("--keep", action="store_true", help="reuse the seeded database as it is")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("set DATABASE_URL (sqlite:////tmp/bench.db or postgresql://postgres@127.0.0.1/bench)")
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 32)
    os.environ.setdefault("BASE_URL", "http://127.0.0.1:5000")
    os.environ["RATELIMIT_ENABLED"] = "1"
    os.environ["RATELIMIT_STORAGE_URI"] = "memory://"
    os.environ["API_RATE_LIMIT"] = "100000000 per minute"
    os.environ["SCHEDULER_ENABLED"] = "0"
    if not args.keep:
        app = _app()
        started = time.perf_counter()
        reset_schema(app)
        seed(app, invoices=args.invoices, clients=args.clients, today=datetime.now(UTC).date())
        print(f"seeded {args.invoices:,} invoices over {args.clients:,} clients in "
              f"{time.perf_counter() - started:.1f} s")
    token, client_id = api_key_and_client()
    body = json.dumps({"client": client_id, "lines": [
        {"description": "Design sprint", "quantity": "3", "unit_price": 45000, "tax_rate": "20"},
        {"description": "Hosting", "unit_price": 2500}]})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app_proc, app_url = serve("wsgi:app", env)
    hello_proc, hello_url = serve("bench.list_bench:hello", env)
    auth = {"Authorization": f"Bearer {token}"}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(POST_SCRIPT % (body, token))
    try:
        for _ in range(20):  # warm up both workers
            urllib.request.urlopen(urllib.request.Request(app_url + LIST, headers=auth)).read()
            urllib.request.urlopen(hello_url + "/").read()
        results = {
            "hello": wrk(hello_url + "/"),
            "GET list": wrk(app_url + LIST, headers=auth),
            "POST": wrk(app_url + "/api/v1/invoices", script=script.name),
        }
        medians = {
            "hello": sequential(hello_url + "/", {}),
            "GET list": sequential(app_url + LIST, auth),
            "POST": post_sequential(app_url + "/api/v1/invoices", token, body.encode()),
        }
    finally:
        os.unlink(script.name)
        for proc in (app_proc, hello_proc):
            proc.terminate()
            proc.wait()
    engine = os.environ["DATABASE_URL"].split(":", 1)[0]
    ceiling = results["hello"]["rps"]
    print(f"\n{engine}, {args.invoices:,} invoices, gunicorn (invoicing/gunicorn_conf.py), wrk -t2 -c16 -d10s")
    print(f"{'request':<10} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'of hello':>9} {'median 1-by-1 ms':>17}")
    for name, r in results.items():
        print(f"{name:<10} {r['rps']:>8.0f} {r['p50']:>8.1f} {r['p99']:>8.1f} {r['rps'] / ceiling:>8.1%} "
              f"{medians[name]:>17.1f}")
    print(f"GET list = {LIST} (newest first, full invoice summaries); POST = a two-line draft with its own "
          "Idempotency-Key")


if __name__ == "__main__":
    main()
