"""Property tests: thousands of generated requests straight to the webhook handler.

Properties, for every input:
- the answer is HTTP 200 (an AdmissionReview) or 400 (not a usable review): never 500, never an exception;
- a 200 answer echoes the uid and, when it denies, carries a Status with a 4xx code and a message;
- the checks never fail internally (the fail-closed path is for bugs: it must not be reached);
- a JSON Patch from the mutating side applies to the object.

Generators: arbitrary JSON; the worked example's objects with up to three values replaced by arbitrary
JSON or by another value of the same object (which often stays schema-valid, so it reaches deep into
every kind's semantic checks and policy preflight); arbitrary bytes.
"""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from joch.api import v1alpha1
from joch.domain.admission import Admission, apply_patch
from joch.webhooks import AdmissionEndpoint
from tests import helpers
from tests.unit.admission import factories as f

EXAMPLES = list(helpers.joch_examples())
WORLD = f.world(
    [*EXAMPLES, *f.prod_scenario()[:0]], namespace_labels={"support": {"joch.dev/environment": "prod"}}
)
ENDPOINT = AdmissionEndpoint(Admission(f.SETTINGS), WORLD.base)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(
        ["", "prod", "openai:gpt-5-thinking", "not-allowlisted", "<0.5", "deny", "support", "joch-system"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
operations = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH", ""])
actions = st.sampled_from(["validate", "mutate"])


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            out.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            out.extend(_paths(child, (*prefix, index)))
    return out


@st.composite
def mutated_examples(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in _paths(doc) if p]
        path = draw(st.sampled_from(paths))
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        leaves = [v for p in paths if not isinstance(v := _at(doc, p), dict | list)]
        parent[path[-1]] = draw(st.one_of(st.sampled_from(leaves), json_values) if leaves else json_values)
    return doc


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def generated_objects(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(v1alpha1.KINDS))
    spec = draw(
        st.dictionaries(
            st.sampled_from(["strategy", "rules", "tools", "framework", "thresholds", "metrics"]),
            json_values,
            max_size=4,
        )
    )
    metadata = draw(
        st.fixed_dictionaries(
            {"name": st.one_of(st.just("x"), st.text(max_size=10))},
            optional={"namespace": st.sampled_from(["support", "other", ""]), "labels": json_values},
        )
    )
    return {"apiVersion": kind.crd.api_version, "kind": kind.crd.kind, "metadata": metadata, "spec": spec}


def _check(action: str, review: Any) -> None:
    try:
        body = json.dumps(review).encode()
    except (TypeError, ValueError):
        return
    status, payload = ENDPOINT.handle(action, body)  # type: ignore[arg-type]
    assert status in (200, 400), payload
    assert ENDPOINT.counts.get("internal_error", 0) == 0
    if status == 400:
        assert isinstance(payload["error"], str)
        return
    response = payload["response"]
    assert response["uid"] == review["request"]["uid"]
    if not response["allowed"]:
        assert 400 <= response["status"]["code"] < 600
        assert response["status"]["code"] != 500
        assert response["status"]["message"]
    if "patch" in response:
        obj = review["request"]["object"]
        apply_patch(obj, json.loads(base64.b64decode(response["patch"])))


def _review(obj: Any, old: Any, operation: str) -> Any:
    review = f.review(obj if isinstance(obj, dict) else {"kind": "Agent"}, operation=operation, old=old)
    review["request"]["object"] = obj
    return review


SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@SETTINGS
@given(
    obj=mutated_examples(), old=st.one_of(st.none(), mutated_examples()), operation=operations, action=actions
)
def test_mutated_examples(obj: Any, old: Any, operation: str, action: str) -> None:
    _check(action, _review(obj, old, operation))


@SETTINGS
@given(obj=generated_objects(), operation=operations, action=actions)
def test_generated_objects(obj: Any, operation: str, action: str) -> None:
    _check(action, _review(obj, None, operation))


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(obj=json_values, action=actions)
def test_arbitrary_json_objects(obj: Any, action: str) -> None:
    _check(action, _review(obj, None, "CREATE"))


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(review=json_values, action=actions)
def test_arbitrary_json_bodies(review: Any, action: str) -> None:
    status, _ = ENDPOINT.handle(action, json.dumps(review).encode())  # type: ignore[arg-type]
    assert status in (200, 400)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(body=st.binary(max_size=200), action=actions)
def test_arbitrary_bytes(body: bytes, action: str) -> None:
    status, _ = ENDPOINT.handle(action, body)  # type: ignore[arg-type]
    assert status in (200, 400)
