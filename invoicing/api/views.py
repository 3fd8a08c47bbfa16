"""The OpenAPI document (public: it describes the API, it holds no data)."""

from __future__ import annotations

import copy
from typing import Any

from flask import current_app, jsonify
from flask.typing import ResponseReturnValue

from invoicing.api import bp


def openapi_document() -> dict[str, Any]:
    """A copy of the document (apispec hands out its own dicts: a caller changing one would change the API's)."""
    document: dict[str, Any] = copy.deepcopy(current_app.extensions["invoicing_api"].spec.to_dict())
    return document


@bp.get("/openapi.json")
@bp.doc(security=[], responses={"200": {"description": "This document (OpenAPI 3.1).",
                                        "content": {"application/json": {"schema": {"type": "object"}}}}})
def openapi() -> ResponseReturnValue:
    """The OpenAPI 3.1 document of this API (no key needed)."""
    return jsonify(openapi_document())
