"""Request bodies of the /v1 API: every hostile body is a 4xx naming what was wrong."""

from __future__ import annotations

import json

import pydantic
import pytest
from kubernetes import client as k8s

from joch.apiserver import bodies
from joch.apiserver.callers import Callers, token_of
from joch.apiserver.errors import ApiError


def refused(call: object, *args: object, **kwargs: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value


def test_a_content_type_not_accepted_is_415() -> None:
    error = refused(bodies.decode, b"{}", "text/plain", accepted=bodies.JSON_TYPES)
    assert (error.status, error.code) == (415, "UnsupportedMediaType")
    assert "text/plain" in error.message
    assert "application/json" in error.message


def test_an_oversized_body_is_413() -> None:
    error = refused(
        bodies.decode, b"x" * (bodies.MAX_BODY_BYTES + 1), "application/json", accepted=bodies.JSON_TYPES
    )
    assert (error.status, error.code) == (413, "TooLarge")


def test_invalid_utf8_is_400_naming_the_byte() -> None:
    error = refused(bodies.decode, b'{"a": "\xff"}', "application/json", accepted=bodies.JSON_TYPES)
    assert error.status == 400
    assert "not UTF-8" in error.message
    assert "byte 7" in error.message


@pytest.mark.parametrize("content_type", ["application/json", "application/yaml"])
def test_a_hundred_levels_deep_is_400(content_type: str) -> None:
    deep = "[" * 100 + "]" * 100
    error = refused(bodies.documents, deep, content_type)
    assert error.status == 400
    assert f"deeper than {bodies.MAX_DEPTH}" in error.message


def test_ten_thousand_documents_is_413() -> None:
    text = "\n---\n".join(f"kind: Tool\nmetadata: {{name: t{i}}}" for i in range(10_000))
    error = refused(bodies.documents, text, "application/yaml")
    assert (error.status, error.code) == (413, "TooLarge")
    assert str(bodies.MAX_DOCUMENTS) in error.message


def test_yaml_aliases_are_refused() -> None:
    bomb = 'a: &a ["x", "x"]\nb: &b [*a, *a]\nc: [*b, *b]\n'
    error = refused(bodies.documents, bomb, "application/yaml")
    assert error.status == 400
    assert "aliases" in error.message
    assert "line 2" in error.message


def test_invalid_yaml_names_line_and_column() -> None:
    error = refused(bodies.documents, "kind: Tool\nmetadata: {name: [\n", "application/yaml")
    assert error.status == 400
    assert "not valid YAML (line" in error.message


def test_an_empty_body_holds_no_document() -> None:
    assert refused(bodies.documents, "---\n", "application/yaml").message == "the body holds no document"


def test_multi_document_yaml_and_json_lists_are_documents() -> None:
    found = bodies.documents("a: 1\n---\n---\nb: 2\n", "application/yaml")
    assert found == [("body#1", {"a": 1}), ("body#3", {"b": 2})]
    listed = bodies.documents(json.dumps({"kind": "List", "items": [{"a": 1}, {"b": 2}]}), "application/json")
    assert [value for _, value in listed] == [{"a": 1}, {"b": 2}]
    array = bodies.documents(json.dumps([{"a": 1}, {"b": 2}]), "application/json")
    assert [value for _, value in array] == [{"a": 1}, {"b": 2}]
    single = bodies.documents(json.dumps({"kind": "Tool"}), "application/json")
    assert single == [("body#1", {"kind": "Tool"})]


class Shape(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    decision: str
    count: int = 0


def test_a_model_body_names_the_field_and_reason() -> None:
    error = refused(bodies.model, '{"decision": "x", "count": "many"}', Shape)
    assert (error.status, error.code) == (422, "Invalid")
    assert error.message.startswith("count: ")
    assert error.details["fields"][0]["field"] == "count"
    assert refused(bodies.model, '{"decision": "x", "extra": 1}', Shape).message.startswith("extra: ")
    assert refused(bodies.model, "not json", Shape).status == 400
    assert bodies.model('{"decision": "ok"}', Shape).decision == "ok"


def test_no_token_is_401() -> None:
    error = refused(token_of, {})
    assert (error.status, error.code) == (401, "Unauthorized")
    assert refused(token_of, {"Authorization": "Basic dXNlcjpwdw=="}).status == 401
    assert refused(token_of, {"Authorization": "Bearer "}).status == 401
    assert refused(token_of, {"Authorization": "Bearer " + "x" * 20_000}).status == 401


def test_impersonation_headers_are_refused_before_the_token_is_read() -> None:
    for header in ("Impersonate-User", "impersonate-group", "Impersonate-Extra-scopes", "Impersonate-Uid"):
        error = refused(token_of, {header: "admin", "Authorization": "Bearer abc"})
        assert (error.status, error.code) == (400, "ImpersonationRefused"), header
        assert header in error.message


def test_a_bearer_token_is_taken() -> None:
    assert token_of({"Authorization": "Bearer abc.def.ghi"}) == "abc.def.ghi"
    assert token_of({"Authorization": "bearer abc"}) == "abc"


def test_a_callers_client_sends_only_the_callers_token() -> None:
    base = k8s.Configuration()
    base.host = "https://127.0.0.1:6443"
    base.cert_file, base.key_file = "/operator/client.crt", "/operator/client.key"
    base.api_key = {"authorization": "Bearer operator-token"}
    configuration = Callers(base).configuration("caller-token")
    assert configuration.auth_settings()["BearerToken"]["value"] == "Bearer caller-token"
    assert (configuration.cert_file, configuration.key_file) == (None, None)
    assert base.api_key == {"authorization": "Bearer operator-token"}  # the operator's own is untouched
