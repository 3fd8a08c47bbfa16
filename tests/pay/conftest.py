from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import NOW
from tests.pay.support import stripe_app  # noqa: F401


@pytest.fixture(autouse=True)
def _at_now(time_machine: Any) -> None:
    """Pages run on the real clock: start it at the tests' NOW (invoices are dated from it) and let it tick."""
    time_machine.move_to(NOW, tick=True)
