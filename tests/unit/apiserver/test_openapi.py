"""The OpenAPI document of the /v1 API: valid OpenAPI 3.1, one operation per route, the same bytes from
the same routes, and the copy in docs/ current."""

from __future__ import annotations

import json
import pathlib

from openapi_spec_validator import validate

from joch.apiserver import ROUTES, openapi

DOC = pathlib.Path(__file__).resolve().parents[3] / "docs" / "api" / "openapi.json"


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi.document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_every_route_is_one_operation_with_its_path_parameters() -> None:
    document = openapi.document()
    operations = {(path, method) for path, item in document["paths"].items() for method in item}
    assert operations == {(route.path, route.method.lower()) for route in ROUTES}
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids)), ids
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]
        in_path = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
        assert in_path == {part[1:-1] for part in route.path.split("/") if part.startswith("{")}
        if route.auth:
            assert "401" in operation["responses"], route.path
        else:
            assert operation["security"] == []


def test_request_bodies_come_from_the_models() -> None:
    document = openapi.document()
    decide = document["paths"]["/v1/namespaces/{namespace}/approvals/{name}/decide"]["post"]
    ref = decide["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["properties"]["decision"]["enum"] == ["approve", "reject", "edit"]
    assert schema["additionalProperties"] is False


def test_the_copy_in_docs_is_current() -> None:
    assert json.loads(DOC.read_text()) == openapi.document(), "run make manifests"
