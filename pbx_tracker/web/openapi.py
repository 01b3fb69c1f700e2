"""The OpenAPI 3.1 description of the HTTP API, built from the pydantic models.

The handlers validate with the same models, so the description cannot drift
from what is accepted.  Each model's JSON schema (``model_json_schema`` with
``#/components/schemas/{model}`` references) goes to ``components.schemas``,
with the models it refers to (its ``$defs``) hoisted next to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["REF_TEMPLATE", "Operation", "Parameter", "Response", "build_document"]

REF_TEMPLATE = "#/components/schemas/{model}"
JsonSchemaMode = Literal["validation", "serialization"]


@dataclass(frozen=True, slots=True)
class Response:
    """One possible answer: its description and body model (None: no body)."""

    description: str
    model: type[BaseModel] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Parameter:
    """A path parameter, with its JSON schema."""

    name: str
    description: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, as the router has it (``/api/v1/visits/{visit_id}``)."""

    method: str
    path: str
    operation_id: str
    summary: str
    responses: Mapping[int, Response]
    request: type[BaseModel] | None = None
    parameters: Sequence[Parameter] = ()


def build_document(operations: Sequence[Operation], *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``operations``."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        item[operation.method.lower()] = _operation(operation, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items()))},
    }


def _operation(operation: Operation, schemas: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "responses": {
            str(status): _response(response, schemas)
            for status, response in sorted(operation.responses.items())
        },
    }
    if operation.parameters:
        described["parameters"] = [_parameter(p) for p in operation.parameters]
    if operation.request is not None:
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(operation.request, schemas)}},
        }
    return described


def _parameter(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "in": "path",
        "required": True,
        "description": parameter.description,
        "schema": dict(parameter.schema),
    }


def _response(response: Response, schemas: dict[str, Any]) -> dict[str, Any]:
    described: dict[str, Any] = {"description": response.description}
    if response.model is not None:
        schema = _ref(response.model, schemas, mode="serialization")
        described["content"] = {"application/json": {"schema": schema}}
    if response.headers:
        described["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in response.headers.items()
        }
    return described


def _ref(
    model: type[BaseModel], schemas: dict[str, Any], mode: JsonSchemaMode = "validation"
) -> dict[str, str]:
    """Add ``model`` (and the models it uses) to ``schemas``; a reference to it."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode)
    for name, nested in schema.pop("$defs", {}).items():
        schemas.setdefault(name, nested)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}
