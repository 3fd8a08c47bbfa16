from __future__ import annotations

from collections.abc import Iterator

import pytest

from invoicing.services.reports import figures


@pytest.fixture(autouse=True)
def _forget_reports() -> Iterator[None]:
    """Each test starts with no report kept from the one before (its tables were emptied, ids start again)."""
    figures.forget()
    yield
    figures.forget()
