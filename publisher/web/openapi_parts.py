"""Pieces of the OpenAPI document shared by the modules that describe their own routes
(publisher.web.openapi merges them; it imports those modules, so the pieces live here)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def problems(*codes: int) -> dict[str, Any]:
    """Responses that are RFC 9457 problem documents."""
    ref = {"$ref": "#/components/schemas/Problem"}
    return {
        str(c): {"description": "problem", "content": {"application/problem+json": {"schema": ref}}}
        for c in codes
    }


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """A JSON request body of `model`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"required": required, "content": {"application/json": {"schema": ref}}}


def param(name: str, where: str = "path", kind: str = "integer") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": {"type": kind}}
