"""The OpenAPI document, made from the route table and the pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bootlab import __version__
from bootlab.api import ErrorBody
from bootlab.daemon.routes import ROUTES

_REF = "#/components/schemas/{model}"


def document() -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for route in ROUTES:
        models.add(route.response)
        if route.body is not None:
            models.add(route.body)
    ordered = sorted(models, key=lambda model: model.__name__)
    modes = [(model, "validation" if _is_request(model) else "serialization") for model in ordered]
    _, schemas = models_json_schema(modes, ref_template=_REF)  # type: ignore[arg-type]
    error = {"content": {"application/json": {"schema": {"$ref": _ref(ErrorBody)}}}}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.method.lower()
            + route.path.replace("/", "_").replace("{", "").replace("}", ""),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": _ref(route.response)}}},
                },
                "4XX": {"description": "The request cannot be done; see error and hint"} | error,
                "5XX": {"description": "The appliance failed; see the journal"} | error,
            },
        }
        if route.parameters:
            operation["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "enum": list(allowed)},
                }
                for name, allowed in route.parameters.items()
            ]
        if route.stream and route.body is not None:
            # An upload: its options are the query, the body a tar stream (chunked).
            schema = route.body.model_json_schema()
            operation["parameters"] = [
                {"name": name, "in": "query", "required": name in schema.get("required", ())}
                | {"schema": field}
                for name, field in schema["properties"].items()
            ]
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
                },
            }
        elif route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": _ref(route.body)}}},
            }
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "bootlab appliance API", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {})},
    }


def _is_request(model: type[BaseModel]) -> bool:
    return any(route.body is model for route in ROUTES)


def _ref(model: type[BaseModel]) -> str:
    return _REF.format(model=model.__name__)
