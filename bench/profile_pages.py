"""Where a page's time goes: profile the admin list, a filtered list, a search keystroke and the pay page in
process (cProfile over N requests through Flask's test client, no server, no network).

    DATABASE_URL=sqlite:////tmp/bench.db .venv/bin/python -m bench.profile_pages [--seed] [-n 300] [--top 25]

Uses the database bench.list_bench seeded (`--seed` seeds it first, 100,000 invoices). Prints, per page, the
CPU time of a request without the profiler (fastest and median of N: the fastest holds on a busy machine),
then the mean time per request profiled and the functions with the most own time, grouped by where they live
(our code, SQLAlchemy, Jinja, Werkzeug/Flask, the database driver). `hello` is the same app's /healthz, the
cheapest route: the floor of any page in this process; `admin` is /admin/password, an admin page that shows almost
nothing (session, user and organization, CSRF token, layout, scheduler banner): the floor of any admin page.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import time
from collections import defaultdict
from datetime import UTC, datetime

from bench.list_bench import EMAIL, FILTERED, KEYSTROKE, PASSWORD, USER_AGENT, _app, pay_path, reset_schema, seed

AREAS = (("invoicing/", "ours"), ("templates/", "templates"), ("sqlalchemy", "SQLAlchemy"), ("jinja2", "Jinja"),
         ("werkzeug", "Werkzeug"), ("flask", "Flask"), ("sqlite3", "driver"), ("psycopg", "driver"),
         ("babel", "Babel"))


def area(filename: str) -> str:
    return next((label for needle, label in AREAS if needle in filename), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", action="store_true")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--page", action="append", help="only these pages (hello, admin, list, filtered, "
                        "keystroke, pay); admin: the bare signed-in /admin/password, what every admin page shares")
    parser.add_argument("--no-profile", action="store_true", help="only the unprofiled times (quick; growth runs)")
    args = parser.parse_args()
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-" + "x" * 32)
    os.environ.setdefault("BASE_URL", "http://127.0.0.1:5000")
    os.environ["RATELIMIT_ENABLED"] = "0"
    os.environ["SCHEDULER_ENABLED"] = "0"
    app = _app()
    if args.seed:
        reset_schema(app)
        seed(app, invoices=100_000, clients=1_000, today=datetime.now(UTC).date())
    pay = pay_path(app)
    http = app.test_client()
    http.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    staff = app.test_client()
    staff.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    app.config["WTF_CSRF_ENABLED"] = False
    assert staff.post("/admin/login", data={"email": EMAIL, "password": PASSWORD}).status_code == 303
    pages = {"hello": (http, "/healthz", {}), "admin": (staff, "/admin/password", {}),
             "list": (staff, "/admin/invoices", {}), "filtered": (staff, FILTERED, {}),
             "keystroke": (staff, KEYSTROKE, {"HX-Request": "true"}), "pay": (http, pay, {})}
    for name, (client, path, headers) in pages.items():
        if args.page and name not in args.page:
            continue
        for _ in range(20):
            assert client.get(path, headers=headers).status_code == 200
        cpu, wall = [], []
        for _ in range(args.n):
            started, clock = time.process_time(), time.perf_counter()
            client.get(path, headers=headers)
            cpu.append((time.process_time() - started) * 1000)
            wall.append((time.perf_counter() - clock) * 1000)
        print(f"\n== {name}: per request without profiler: CPU fastest {min(cpu):.2f} ms, median "
              f"{statistics.median(cpu):.2f} ms; wall fastest {min(wall):.2f} ms (PostgreSQL's own time included)")
        if args.no_profile:
            continue
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for _ in range(args.n):
            client.get(path, headers=headers)
        profile.disable()
        per_request = (time.perf_counter() - started) / args.n * 1000
        stats = pstats.Stats(profile)
        by_area: dict[str, float] = defaultdict(float)
        for (filename, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
            by_area[area(filename)] += own
        total = sum(by_area.values())
        print(f"== {name} {path}: {per_request:.2f} ms per request (profiled; unprofiled is faster)")
        print("   own time by area: " + ", ".join(f"{k} {v / total:.0%}" for k, v in
                                                  sorted(by_area.items(), key=lambda kv: -kv[1])))
        stats.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
