"""API test fixtures: keys for the personas' organizations, and a client that checks every answer against the
OpenAPI document (the contract): the operation and status must be documented and the body must validate."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS31Validator

from invoicing.api.views import openapi_document
from invoicing.services.api.keys import create_key
from tests.conftest import NOW, SYSTEM, World


@dataclass
class Keys:
    write: str  # org A, read and write
    read: str  # org A, read only
    other: str  # org B, read and write


@pytest.fixture
def keys(world: World) -> Keys:
    def new(org_id: int, scopes: list[str]) -> str:
        return create_key(org_id, name="test", scopes=scopes, expires_at=None, live=False, actor=SYSTEM, now=NOW).token

    return Keys(new(world.org_a.id, ["read", "write"]), new(world.org_a.id, ["read"]),
                new(world.org_b.id, ["read", "write"]))


class Contract:
    """The OpenAPI document's operations, for checking real answers against it."""

    def __init__(self, document: dict[str, Any]):
        self.document = document
        self.routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path)
                       for path in document["paths"]]

    def operation(self, method: str, path: str) -> dict[str, Any] | None:
        for pattern, template in self.routes:
            if pattern.match(path):
                return self.document["paths"][template].get(method.lower())
        return None

    def check(self, method: str, path: str, response: Any) -> None:
        operation = self.operation(method, path.split("?", 1)[0])
        if operation is None:
            return  # an address the API does not have: nothing to hold it to
        documented = operation["responses"].get(str(response.status_code))
        assert documented is not None, f"{method} {path} answered {response.status_code}, not documented"
        if response.status_code == 204:
            return
        content = documented.get("content", {})
        assert response.mimetype in content, f"{method} {path} {response.status_code}: {response.mimetype} undocumented"
        schema = content[response.mimetype].get("schema")
        if schema and response.mimetype.endswith("json"):
            validator = OAS31Validator({**schema, "components": self.document["components"]})
            errors = sorted(validator.iter_errors(json.loads(response.data)), key=str)
            assert not errors, f"{method} {path} {response.status_code}: {errors[0]}"


@pytest.fixture(scope="session")
def contract(app: Flask) -> Contract:
    with app.app_context():
        return Contract(openapi_document())


class Api:
    """The test client with a key, checking each answer against the contract."""

    def __init__(self, client: FlaskClient, contract: Contract, key: str | None):
        self.client, self.contract, self.key = client, contract, key

    def as_key(self, key: str | None) -> Api:
        return Api(self.client, self.contract, key)

    def request(self, method: str, path: str, *, key: Any = "default", headers: dict[str, str] | None = None,
                **kwargs: Any) -> Any:
        key = self.key if key == "default" else key
        sent = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.client.open(path, method=method, headers={**sent, **(headers or {})}, **kwargs)
        self.contract.check(method, path, response)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


@pytest.fixture
def api(client: FlaskClient, contract: Contract, keys: Keys) -> Api:
    return Api(client, contract, keys.write)


def cid(client: Any) -> str:
    return f"cli_{client.public_id}"


def iid(invoice: Any) -> str:
    return f"inv_{invoice.public_id}"


def problem_fields(response: Any) -> dict[str | None, str]:
    assert response.mimetype == "application/problem+json", response.data
    return {e["field"]: e["message"] for e in response.json["errors"]}
