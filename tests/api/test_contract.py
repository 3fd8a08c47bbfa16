"""The OpenAPI document: valid OpenAPI 3.1, and it lists every route of the API with its methods (the other API
tests check every answer against it through tests/api/conftest.Api)."""

from __future__ import annotations

import re

from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from invoicing.api.views import openapi_document


def test_it_is_a_valid_openapi_31_document(api):
    document = api.get("/api/v1/openapi.json", key=None).json
    assert document["openapi"] == "3.1.0"
    validate(document)  # raises on any error


def test_the_validator_would_catch_a_broken_document(app):
    document = openapi_document()
    document["paths"]["/api/v1/invoices"]["get"]["responses"] = "nothing"
    try:
        validate(document)
    except OpenAPIValidationError:
        return
    raise AssertionError("a broken document passed")


def test_it_lists_every_route_and_method(app):
    document = openapi_document()
    routes = {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1")
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, item in document["paths"].items() for method in item
                  if method in ("get", "post", "put", "patch", "delete")}
    assert routes == documented
    assert len(routes) >= 20


def test_every_operation_says_what_it_does_and_what_can_go_wrong(app):
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            assert operation.get("summary"), (method, path)
            if path != "/api/v1/openapi.json":
                assert {"401", "429"} <= set(operation["responses"]), (method, path)
            if method in ("post", "put", "patch", "delete"):
                assert "403" in operation["responses"], (method, path)
