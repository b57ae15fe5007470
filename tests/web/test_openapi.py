"""The OpenAPI document describes the API the app actually serves."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from publisher.web.auth import PUBLIC_ROUTES
from tests.conftest import Api

METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


async def _document(api: Api) -> dict[str, Any]:
    status, body, headers = await api.call("GET", "/api/v1/openapi.json", who=None)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    return dict(body)


def _registered(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method, resource.canonical)
        for resource in app.router.resources()
        for route in resource
        if route.method not in ("HEAD", "*")
    }


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = doc
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


async def test_document_is_public_openapi_3(api: Api) -> None:
    doc = await _document(api)
    assert doc["openapi"].startswith("3.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["paths"]
    # with a garbage token too: a public route does not look at the token
    status, _, _ = await api.call(
        "GET", "/api/v1/openapi.json", who=None, headers={"Authorization": "Bearer nope"}
    )
    assert status == 200


async def test_every_api_route_is_documented_with_its_method(api: Api) -> None:
    app = api.client.app
    assert app is not None
    doc = await _document(api)
    registered = _registered(app)
    api_routes = {(m, p) for m, p in registered if p.startswith("/api/v1")}
    assert len(api_routes) >= 11
    missing = sorted(f"{m} {p}" for m, p in api_routes if m.lower() not in doc["paths"].get(p, {}))
    assert not missing, f"routes missing from the OpenAPI document: {missing}"
    # the public routes are documented too, so the allowlist is documented
    for method, path in PUBLIC_ROUTES:
        assert method.lower() in doc["paths"].get(path, {}), (method, path)
    # and the document promises nothing the app does not serve
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}
    assert not documented - registered, sorted(documented - registered)


async def test_staff_routes_declare_bearer_security_public_ones_do_not(api: Api) -> None:
    doc = await _document(api)
    schemes = doc["components"]["securitySchemes"]
    bearer = [name for name, s in schemes.items() if s.get("scheme", "").lower() == "bearer"]
    assert bearer and all(schemes[b]["type"] == "http" for b in bearer)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if method not in METHODS:
                continue
            security = op.get("security", doc.get("security"))
            if (method.upper(), path) in PUBLIC_ROUTES:
                assert not security, (method, path)
            else:
                assert security, (method, path)
                assert any(set(req) & set(bearer) for req in security), (method, path)
                assert "401" in op["responses"], (method, path)


async def test_approve_documents_acknowledge_personal_data(api: Api) -> None:
    doc = await _document(api)
    approve = doc["paths"]["/api/v1/items/{item_id}/approve"]["post"]
    schema = _resolve(doc, approve["requestBody"]["content"]["application/json"]["schema"])
    prop = schema["properties"]["acknowledge_personal_data"]
    assert prop["type"] == "boolean" and prop.get("default") is False
    assert "personal data" in prop["description"]
    assert "409" in approve["responses"]


async def test_request_bodies_resolve_to_schemas_with_the_item_fields(api: Api) -> None:
    doc = await _document(api)
    create = doc["paths"]["/api/v1/items"]["post"]
    schema = _resolve(doc, create["requestBody"]["content"]["application/json"]["schema"])
    assert {"title", "body", "category", "written_at"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False  # unknown fields are refused
    patch = doc["paths"]["/api/v1/items/{item_id}"]["patch"]
    headers = [p for p in patch["parameters"] if p["in"] == "header"]
    assert any(p["name"] == "If-Match" and p["required"] for p in headers)
    assert {"412", "428"} <= set(patch["responses"])
    reject = doc["paths"]["/api/v1/items/{item_id}/reject"]["post"]
    schema = _resolve(doc, reject["requestBody"]["content"]["application/json"]["schema"])
    assert "reason" in schema["required"]


async def test_document_passes_the_openapi_spec_validator(api: Api) -> None:
    from openapi_spec_validator import validate

    doc = await _document(api)
    validate(doc)  # raises with the first problem


async def test_path_parameters_are_declared(api: Api) -> None:
    import re

    doc = await _document(api)
    undeclared = []
    for path, ops in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in ops.items():
            if method not in METHODS:
                continue
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            assert declared <= names, (method, path, declared)
            if names - declared:
                undeclared.append(f"{method.upper()} {path}: {sorted(names - declared)}")
    assert not undeclared, undeclared
