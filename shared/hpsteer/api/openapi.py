"""The API's OpenAPI 3.1 document, generated from the route table and the pydantic models.

``python -m hpsteer.api.openapi`` writes ``docs/openapi.json``; ``--check`` writes nothing and
exits 1 when the file differs from what the code generates now (a test runs the check). The API
serves the same document at ``GET /openapi.json``.

Per route: its path and query parameters (from the route's path and query models; a query
parameter's ``null`` alternative is dropped, since absence is how a query leaves it out), its
body (the body model's schema for JSON; a string for CSV), its answers (the answer models) and
its error answers, each an ``ErrorBody``: 400, 401, 403, 500 and 503 on every route, 404 where
a path names something, 413, 415 and 422 where a body is taken, and the route's own (409).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from hpsteer.api.routes import ROUTES
from hpsteer.api.routing import Route
from hpsteer.domain.operator_views import ErrorBody
from hpsteer.domain.roles import REQUIRED_ROLE

__all__ = ["DEFAULT_PATH", "document", "main", "rendered"]

DEFAULT_PATH = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"
REF = "#/components/schemas/{model}"
SECURITY = "googleIdToken"
API_VERSION = "1.0.0"

_ERROR_TEXT: dict[int, str] = {
    400: "Malformed request: not JSON or CSV, or a bad path or query parameter (field named).",
    401: "No valid Google ID token for this API (production).",
    403: "The caller has no role here, or a role too low for this operation.",
    404: "No such device, alert or route.",
    409: "The request conflicts with what is stored.",
    413: "The body is too large.",
    415: "The body is of another media type than the operation takes.",
    422: "The body is well-formed but refused (wrong type, unknown field, out of range; the "
    "field is named).",
    500: "An internal error (logged).",
    503: "A backend did not answer; try again after Retry-After.",
}


def _models() -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    seen: dict[tuple[type[BaseModel], str], None] = {}
    for route in ROUTES:
        for model in (route.path_model, route.query_model, route.body_model):
            if model is not None:
                seen[(model, "validation")] = None
        for model, _ in route.responses.values():
            seen[(model, "serialization")] = None
    seen[(ErrorBody, "serialization")] = None
    return [
        (model, "validation" if mode == "validation" else "serialization") for model, mode in seen
    ]


def _parameter_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema as a parameter's: no title, no null alternative, no null default."""
    schema = {k: v for k, v in schema.items() if k != "title"}
    variants = schema.pop("anyOf", None)
    if variants is not None:
        concrete = [v for v in variants if v != {"type": "null"}]
        if len(concrete) == 1:
            schema = {**concrete[0], **schema}
        else:
            schema["anyOf"] = concrete
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _parameters(
    model: type[BaseModel] | None, where: Literal["path", "query"]
) -> list[dict[str, Any]]:
    if model is None:
        return []
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema["properties"].items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": _parameter_schema(prop),
        }
        if "description" in prop:
            parameter["description"] = prop["description"]
        found.append(parameter)
    return found


def _ref(model: type[BaseModel], refs: Mapping[tuple[Any, Any], Any], mode: str) -> Any:
    return refs[(model, mode)]


def _error_statuses(route: Route) -> list[int]:
    statuses = {400, 401, 403, 500, 503, *route.errors}
    if route.path_model is not None:
        statuses.add(404)
    if route.body_media is not None:
        statuses |= {413, 415, 422}
    return sorted(statuses)


def _operation(route: Route, refs: Mapping[tuple[Any, Any], Any]) -> dict[str, Any]:
    error = {"application/json": {"schema": _ref(ErrorBody, refs, "serialization")}}
    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": list(route.tags),
        "x-hpsteer-role": REQUIRED_ROLE[route.operation].value,
    }
    if route.description:
        operation["description"] = route.description
    parameters = _parameters(route.path_model, "path") + _parameters(route.query_model, "query")
    if parameters:
        operation["parameters"] = parameters
    if route.body_media == "text/csv":
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    elif route.body_model is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": _ref(route.body_model, refs, "validation")}},
        }
    responses: dict[str, Any] = {}
    for status, (model, description) in sorted(route.responses.items()):
        responses[str(status)] = {
            "description": description,
            "content": {"application/json": {"schema": _ref(model, refs, "serialization")}},
        }
    for status in _error_statuses(route):
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": error}
    operation["responses"] = responses
    return operation


@functools.cache
def _document() -> str:
    refs, definitions = models_json_schema(_models(), ref_template=REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.template, {})[route.method.lower()] = _operation(route, refs)
    built = {
        "openapi": "3.1.0",
        "info": {
            "title": "hpsteer operator API",
            "version": API_VERSION,
            "description": "Register heat pumps, set comfort, switch steering, see what a heat "
            "pump does and why, handle alerts, re-plan. Callers present a Google-signed ID "
            "token; their email's role (viewer, operator, admin) decides what they may do "
            "(x-hpsteer-role on each operation). Every error answer is an ErrorBody.",
        },
        "security": [{SECURITY: []}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {
                SECURITY: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Google-signed ID token whose audience is the API's URL.",
                }
            },
        },
    }
    return json.dumps(built, indent=2, ensure_ascii=False) + "\n"


def rendered() -> str:
    """The document as ``docs/openapi.json`` holds it (indented JSON, final newline)."""
    return _document()


def document() -> dict[str, Any]:
    """The document as a fresh dict."""
    parsed: dict[str, Any] = json.loads(_document())
    return parsed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hpsteer.api.openapi", description="Write or check docs/openapi.json."
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH)
    options = parser.parse_args(argv)
    text = rendered()
    if options.check:
        current = options.out.read_text(encoding="utf-8") if options.out.is_file() else None
        if current != text:
            print(f"{options.out} is stale: run python -m hpsteer.api.openapi", file=sys.stderr)
            return 1
        print(f"{options.out} is up to date")
        return 0
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(text, encoding="utf-8")
    print(f"wrote {options.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
