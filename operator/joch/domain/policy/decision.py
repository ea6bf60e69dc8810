"""The Decision value (docs/catalog.md section 4.3, with requires.approval from D8 of docs/decisions.md).

``Decision.to_dict()`` is the wire shape (camelCase; optional keys are omitted when empty)::

    {"decision": "allow" | "deny" | "modify",
     "reason": str,                       # a deny caused by a failing rule starts with "PolicyError"
     "policyId": str, "policyNamespace": str, "policyVersion": "v<generation>",
     "rule": int,                         # 0-based index into spec.rules of the deciding policy
     "modifiedRequest": any,              # modify: the payload with redactions applied
     "redactionRules": [str],             # modify: the redaction rules applied, in canonical order
     "requires": {"approval": {"type": "human", "approvers": [...], "timeoutMinutes": n,
                               "onTimeout": "deny", "channels": [...],
                               "policyId": str, "policyNamespace": str, "rule": int}},
     "disabledRules": [{"policyId": str, "policyNamespace": str, "rule": int, "until": RFC 3339}]}

The deciding rule is: for ``deny``, the denying rule; for ``modify``, the first modifying rule; for
``allow``, the first rule that required approval, else the first rule that explicitly allowed, else
none (nothing matched: ``reason`` says so and the policy keys are omitted).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any

from joch.domain.policy import model


@dataclasses.dataclass(frozen=True, slots=True)
class DisabledRule:
    """A rule skipped because an emergency disable was in force; reported in the decision."""

    policy_id: str
    policy_namespace: str
    rule: int
    until: datetime.datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "policyId": self.policy_id,
            "policyNamespace": self.policy_namespace,
            "rule": self.rule,
            "until": self.until.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z"),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    decision: model.Effect
    reason: str
    policy_id: str | None = None
    policy_namespace: str | None = None
    policy_version: str | None = None
    rule: int | None = None
    modified_request: Any = None
    redaction_rules: tuple[str, ...] = ()
    requires: Mapping[str, Any] | None = None
    disabled_rules: tuple[DisabledRule, ...] = ()

    @property
    def denied(self) -> bool:
        return self.decision == "deny"

    @property
    def requires_approval(self) -> bool:
        return self.requires is not None and "approval" in self.requires

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"decision": self.decision, "reason": self.reason}
        if self.policy_id is not None:
            out["policyId"] = self.policy_id
        if self.policy_namespace is not None:
            out["policyNamespace"] = self.policy_namespace
        if self.policy_version is not None:
            out["policyVersion"] = self.policy_version
        if self.rule is not None:
            out["rule"] = self.rule
        if self.modified_request is not None:
            out["modifiedRequest"] = self.modified_request
        if self.redaction_rules:
            out["redactionRules"] = list(self.redaction_rules)
        if self.requires is not None:
            out["requires"] = {key: dict(value) for key, value in self.requires.items()}
        if self.disabled_rules:
            out["disabledRules"] = [item.to_dict() for item in self.disabled_rules]
        return out
