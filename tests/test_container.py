"""The image as an operator runs it: podman runs the image `bash .ci/run` builds (CONTAINER_IMAGE) with a volume,
then migrations, health, an admin, a demo invoice's pay page, the scheduler, a restart and the user it runs as.

Run once per CI run, not per database: `CONTAINER_IMAGE=... pytest -m container tests/test_container.py`.
PODMAN holds the podman command with this machine's flags (.ci/run sets it). Missing podman or image fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.live_fixture import free_port
from tests.test_serving import Browser

pytestmark = pytest.mark.container

SECRET_KEY = "container-test-secret-key-0123456789abcdef"
PASSWORD = "container-password-1"


@dataclass
class Container:
    podman: list[str]
    name: str
    volume: str
    url: str
    started_in: float

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.podman, *args], capture_output=True, text=True, timeout=120)
        if check and result.returncode != 0:
            pytest.fail(f"podman {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def exec(self, *command: str) -> str:
        return self.run("exec", self.name, *command).stdout

    def logs(self) -> str:
        result = self.run("logs", self.name)
        return result.stdout + result.stderr

    def python(self, code: str) -> str:
        """Run code inside the container with the app and its database, as the container's user."""
        return self.exec("python3", "-c", "from invoicing import create_app\nfrom invoicing.extensions import db\n"
                         "app = create_app()\n"
                         "with app.app_context():\n" + "".join(f"    {line}\n" for line in code.splitlines()))

    def wait_healthy(self, timeout: float = 60) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            try:
                status, _url, body = Browser(self.url).open("/healthz", timeout=2)
                if status == 200 and json.loads(body)["database"] == "ok":
                    return time.monotonic() - started
            except OSError:
                pass  # not listening yet
            time.sleep(0.1)
        pytest.fail(f"{self.name} not healthy after {timeout} s:\n{self.logs()[-3000:]}")


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    podman = shlex.split(os.environ.get("PODMAN", "podman"))
    image = os.environ.get("CONTAINER_IMAGE")
    if shutil.which(podman[0]) is None:
        pytest.fail("podman is missing: bash .ci/run installs it (apt-get install podman runc)")
    if not image:
        pytest.fail("CONTAINER_IMAGE is not set: bash .ci/run builds the image and sets it")
    name = f"invoicing-test-{uuid.uuid4().hex[:8]}"
    port = free_port()
    box = Container(podman, name, f"{name}-data", f"http://127.0.0.1:{port}", 0.0)
    box.run("volume", "create", box.volume)
    started = time.monotonic()
    # --network host: no port publishing on these machines; PORT moves gunicorn off 8000 (shared hosts).
    box.run("run", "-d", "--name", name, "--network", "host", "-v", f"{box.volume}:/data",
            "-e", f"SECRET_KEY={SECRET_KEY}", "-e", f"BASE_URL={box.url}", "-e", f"PORT={port}",
            "-e", "LOG_LEVEL=DEBUG", image)  # DEBUG: a line per scheduler run, even an idle one
    try:
        box.wait_healthy()
        box.started_in = time.monotonic() - started
        print(f"\ncontainer: healthy {box.started_in:.1f} s after podman run (empty volume, migrations included)")
        yield box
    finally:
        box.run("rm", "-f", "-t", "5", name, check=False)
        box.run("volume", "rm", "-f", box.volume, check=False)


def test_it_migrates_at_start_and_reports_healthy(container):
    logs = container.logs()
    assert "Running upgrade  -> 0001" in logs and "Listening at: http://0.0.0.0:" in logs
    assert container.python("print(db.session.execute(db.text('SELECT version_num FROM alembic_version'))"
                            ".scalar_one())").strip()
    assert container.run("healthcheck", "run", container.name).returncode == 0  # the image's HEALTHCHECK
    assert container.started_in < 30


def test_it_runs_as_a_non_root_user(container):
    uids = container.exec("sh", "-c", "grep -h '^Uid:' /proc/[0-9]*/status").split()
    assert uids and all(uid != "0" for uid in uids if uid.isdigit())  # gunicorn's master, its worker, this shell
    assert container.exec("id", "-un").strip() == "invoicing"
    assert "gunicorn" in container.exec("cat", "/proc/1/cmdline")


def test_it_creates_an_admin_over_podman_exec_who_logs_in(container):
    out = container.exec("flask", "create-admin", "--email", "owner@example.com", "--password", PASSWORD,
                         "--org", "Container Co")
    assert "Created admin owner@example.com in Container Co" in out
    browser = Browser(container.url)
    status, url, body = browser.log_in("owner@example.com", PASSWORD)
    assert (status, url) == (200, container.url + "/admin/") and "Container Co" in body
    assert browser.open("/admin/invoices")[0] == 200


def test_it_renders_a_demo_invoices_pay_page(container):
    assert "Demo data loaded." in container.exec("flask", "demo")
    number, path = container.python(
        "from invoicing.models import Invoice\n"
        "from invoicing.services.paylinks import token_for\n"
        "invoice = db.session.execute(db.select(Invoice).where(Invoice.status == 'open')"
        ".order_by(Invoice.id)).scalars().first()\n"
        "print(invoice.number, '/pay/' + token_for(invoice, app.config['SECRET_KEY']))").split()
    status, _url, body = Browser(container.url).open(path)
    assert status == 200 and number in body and "Pay" in body
    assert "GET /pay/<token> HTTP/1.1\" 200" in container.logs() and path not in container.logs()


def test_it_runs_each_scheduler_slot_exactly_once(container):
    slots: list[str] = []
    deadline = time.monotonic() + 60
    while len(set(slots)) < 3 and time.monotonic() < deadline:  # deliver-mail: a slot every 15 s
        time.sleep(1)
        slots = re.findall(r"invoicing\.jobs: job deliver-mail slot (\S+):", container.logs())
    assert len(set(slots)) >= 3, container.logs()[-3000:]
    assert len(slots) == len(set(slots)), slots  # one process, one scheduler, and the lease: never twice
    lease = container.python("from invoicing.models import JobRun\n"
                             "print(db.session.get(JobRun, 'deliver-mail').last_slot.isoformat())").strip()
    logged = re.findall(r"job deliver-mail slot (\S+):", container.logs())  # read after the lease
    assert lease.removesuffix("+00:00") in [slot.removesuffix("+00:00") for slot in logged]


def test_it_keeps_its_data_across_a_restart(container):
    container.exec("flask", "create-admin", "--email", "keeper@example.com", "--password", PASSWORD,
                   "--org", "Keeper Co")
    upgrades = container.logs().count("Running upgrade")
    started = time.monotonic()
    container.run("restart", "-t", "10", container.name)
    container.wait_healthy()
    print(f"\ncontainer: healthy {time.monotonic() - started:.1f} s after podman restart")
    assert container.logs().count("Running upgrade") == upgrades  # migrated once; the volume kept the schema
    assert Browser(container.url).log_in("keeper@example.com", PASSWORD)[1] == container.url + "/admin/"
    assert "Demo data already present." in container.exec("flask", "demo")
