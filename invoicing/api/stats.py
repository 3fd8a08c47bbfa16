"""/api/v1/stats: the reporting figures (services/reports/figures.py computes them for the reports page, the
dashboard and this endpoint; nothing is computed twice)."""

from __future__ import annotations

from typing import Any

from invoicing.api import answer, bp
from invoicing.api import schemas as s
from invoicing.api.auth import api_key, now
from invoicing.api.docs import errors
from invoicing.services.api import resources as res


@bp.get("/stats")
@bp.arguments(s.StatsQuery, location="query", unknown="raise")
@bp.response(200, s.StatsOut)
@errors(401, 422)
def stats(query: dict[str, Any]) -> Any:
    """Statistics per currency for a period: the reports page's cards, monthly revenue, payment methods and
    channels, top clients and the receivables aging."""
    return answer(res.stats(api_key().organization, query, now=now()))
