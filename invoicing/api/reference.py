"""The admin's API reference: the OpenAPI document turned into readable sections, each with an example curl."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

METHOD_ORDER = ("post", "get", "put", "patch", "delete")
EXAMPLE_IDS = {"invoice_id": "inv_3f2a9c0d8e7b6a5f4e3d2c1b0a998877",
               "client_id": "cli_8f14e45fceea167a5a36dedd4bea2543",
               "contact_id": "con_c9f0f895fb98ab9159f51fd0297e236d",
               "payment_id": "pay_45c48cce2e2d7fbdea1afc51c7c6ad26"}
QUERY_EXAMPLES = {"/api/v1/invoices": "status=overdue&limit=20",
                  "/api/v1/payments": "created_from=2026-03-01&method=card",
                  "/api/v1/clients": "q=acme", "/api/v1/contacts": "client=" + EXAMPLE_IDS["client_id"]}


@dataclass
class Field:
    name: str
    type: str
    required: bool
    description: str


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: str
    anchor: str
    parameters: list[Field] = field(default_factory=list)
    body: list[Field] = field(default_factory=list)
    responses: list[tuple[str, str]] = field(default_factory=list)
    curl: str = ""


@dataclass
class Section:
    title: str
    operations: list[Operation]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The schema itself: references followed, and a nullable one ({"anyOf": [X, null]}) read as X."""
    while True:
        if "$ref" in schema:
            schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        elif "anyOf" in schema:
            schema = next((s for s in schema["anyOf"] if s.get("type") != "null"), {})
        else:
            return schema


def _type(document: dict[str, Any], schema: dict[str, Any]) -> str:
    schema = _resolve(document, schema)
    kind = schema.get("type", "object")
    kinds = [k for k in (kind if isinstance(kind, list) else [kind]) if k != "null"]
    text = " or ".join(kinds) or "object"
    if schema.get("format"):
        text += f" ({schema['format']})"
    if schema.get("enum"):
        text += ": " + ", ".join(str(v) for v in schema["enum"] if v is not None)
    return text


def _fields(document: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[Field]:
    """The schema's properties, nested objects and lists of objects flattened ("lines[].unit_price")."""
    schema = _resolve(document, schema)
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema.get("properties", {}).items():
        full = prefix + name
        resolved = _resolve(document, prop)
        items = _resolve(document, resolved.get("items", {})) if "array" in str(resolved.get("type")) else {}
        found.append(Field(full, "list" if items else _type(document, prop), name in required,
                           prop.get("description") or resolved.get("description", "")))
        if items.get("properties"):
            found += _fields(document, items, f"{full}[].")
        elif resolved.get("properties"):
            found += _fields(document, resolved, f"{full}.")
    return found


def _curl(base_url: str, method: str, path: str, operation: dict[str, Any]) -> str:
    url = base_url + path.format(**EXAMPLE_IDS)
    if method == "get" and path in QUERY_EXAMPLES:
        url += "?" + QUERY_EXAMPLES[path]
    parts = ["curl"] + ([] if method == "get" else ["-X", method.upper()]) + [shlex.quote(url)]
    lines = [" ".join(parts)]
    if operation.get("security", [{}]) != []:
        lines.append('-H "Authorization: Bearer $INVOICING_API_KEY"')
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    if method == "post":
        lines.append('-H "Idempotency-Key: $(uuidgen)"')
    if body:
        lines.append("-H 'Content-Type: application/json'")
        lines.append("-d " + shlex.quote(json.dumps(body.get("example", {}), indent=2)))
    if path.endswith("/pdf"):
        lines.append("-o invoice.pdf")
    return " \\\n  ".join(lines)


def sections(document: dict[str, Any], base_url: str) -> list[Section]:
    """Operations grouped by resource (the path's first part), in a reading order."""
    grouped: dict[str, list[Operation]] = {}
    for path, item in document.get("paths", {}).items():
        resource = path.removeprefix("/api/v1/").split("/", 1)[0]
        title = "OpenAPI document" if resource == "openapi.json" else resource.capitalize()
        for method in sorted((m for m in item if m in METHOD_ORDER), key=METHOD_ORDER.index):
            op = item[method]
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            grouped.setdefault(title, []).append(Operation(
                method=method.upper(), path=path, summary=op.get("summary", ""), description=op.get("description", ""),
                anchor=f"{method}-{path.removeprefix('/api/v1/').replace('/', '-').replace('{', '').replace('}', '')}",
                parameters=[Field(p["name"], f"{p['in']}, {_type(document, p.get('schema', {}))}",
                                  bool(p.get("required")), p.get("description", ""))
                            for p in [*item.get("parameters", []), *op.get("parameters", [])]],
                body=_fields(document, body) if body else [],
                responses=sorted((code, r.get("description", "")) for code, r in op.get("responses", {}).items()),
                curl=_curl(base_url, method, path, op)))
    order = ["Invoices", "Clients", "Contacts", "Payments", "Stats", "OpenAPI document"]
    return [Section(t, grouped[t]) for t in sorted(grouped, key=lambda t: order.index(t) if t in order else 5)]


def paragraphs(markdown: str) -> list[Markup]:
    """The document's description (a little Markdown: **bold** and `code`) as HTML paragraphs."""
    out = []
    for block in markdown.strip().split("\n\n"):
        html = str(escape(" ".join(block.split())))
        html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
        out.append(Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", html)))
    return out
