"""The governance record (joch.domain.audit.record) and its canonical form."""

from __future__ import annotations

import datetime
import json

import pytest

from joch.domain import audit

WHEN = datetime.datetime(2026, 11, 27, 12, 0, 0, 250000, tzinfo=datetime.UTC)
DEPLOYMENT = audit.Resource("joch.ai/v1alpha1", "Deployment", "support-prod", "support", "uid-1")


def denial() -> dict[str, object]:
    return audit.record(
        WHEN,
        "admission_denial",
        actor=audit.Actor("alice@example.com", ("dev", "system:authenticated")),
        resource=DEPLOYMENT,
        decision="deny",
        reason="Deployment/support-prod: spec.promotion: no approved Approval",
        severity="Medium",
        policy=audit.Policy("no-unpinned-mcp", "3"),
        product_version="1.2.3",
    )


def test_a_denial_has_the_ocsf_fields() -> None:
    record = denial()
    assert record["time"] == 1795780800250
    assert record["time_dt"] == "2026-11-27T12:00:00.250Z"
    assert (record["class_uid"], record["class_name"]) == (6901, "Admission Denial")
    assert (record["category_uid"], record["category_name"]) == (6, "Application Activity")
    assert (record["activity_id"], record["activity_name"], record["type_uid"]) == (2, "Deny", 690102)
    assert (record["status"], record["status_id"]) == ("Failure", 2)
    assert (record["severity"], record["severity_id"]) == ("Medium", 3)
    assert record["message"].startswith("Deployment/support-prod")
    assert record["actor"] == {
        "user": {"name": "alice@example.com", "groups": [{"name": "dev"}, {"name": "system:authenticated"}]}
    }
    assert record["metadata"] == {
        "product": {"name": "Joch", "vendor_name": "Joch", "version": "1.2.3"},
        "version": audit.OCSF_VERSION,
    }
    assert record["joch"] == {
        "class": "admission_denial",
        "decision": "deny",
        "resource": {
            "apiVersion": "joch.ai/v1alpha1",
            "kind": "Deployment",
            "namespace": "support",
            "name": "support-prod",
            "uid": "uid-1",
        },
        "policy": {"id": "no-unpinned-mcp", "version": "3"},
    }


def test_optional_parts_are_left_out() -> None:
    record = audit.record(
        WHEN.replace(tzinfo=None),  # naive: taken as UTC
        "budget_breach",
        actor=audit.OPERATOR,
        resource=audit.Resource("joch.ai/v1alpha1", "Budget", "team-a"),
        decision="breach",
        reason="hard limit reached",
    )
    assert record["time_dt"] == "2026-11-27T12:00:00.250Z"
    assert record["joch"]["resource"] == {
        "apiVersion": "joch.ai/v1alpha1",
        "kind": "Budget",
        "name": "team-a",
    }
    assert "policy" not in record["joch"]
    assert record["metadata"]["product"] == {"name": "Joch", "vendor_name": "Joch"}
    assert record["actor"]["user"] == {"name": audit.OPERATOR_USER, "groups": []}
    assert (record["severity"], record["severity_id"]) == ("Informational", 1)


def test_every_class_and_decision_is_known() -> None:
    for key in audit.CLASSES:
        for decision in audit.DECISIONS:
            audit.record(WHEN, key, actor=audit.OPERATOR, resource=DEPLOYMENT, decision=decision, reason="")
    assert len({c.uid for c in audit.CLASSES.values()}) == len(audit.CLASSES)


@pytest.mark.parametrize(
    ("key", "decision", "severity"),
    [("nope", "deny", "Low"), ("promotion", "nope", "Low"), ("promotion", "allow", "Loud")],
)
def test_unknown_values_are_refused(key: str, decision: str, severity: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        audit.record(
            WHEN,
            key,
            actor=audit.OPERATOR,
            resource=DEPLOYMENT,
            decision=decision,
            reason="",
            severity=severity,
        )


def test_canonical_is_sorted_compact_utf8() -> None:
    assert audit.canonical({"b": 1, "a": {"z": "é", "y": [1, 2]}}) == '{"a":{"y":[1,2],"z":"é"},"b":1}'
    line = audit.canonical(denial())
    assert json.loads(line) == denial()
    assert '": ' not in line
    assert '", "' not in line
    with pytest.raises(ValueError, match="JSON compliant"):
        audit.canonical({"x": float("nan")})


def test_the_digest_ignores_the_hash_field() -> None:
    record = denial()
    assert audit.digest(record) == audit.digest({**record, "hash": "whatever"})
    assert audit.digest(record) != audit.digest({**record, "message": "other"})
