"""Approval (runtime.joch.dev/v1alpha1): a human decision a policy or a promotion gate asked for.

docs/catalog.md section 2.8, section 5 (routing.timeoutMinutes default 30) and section 8 #30 (phases
Pending|Approved|Rejected|Expired|Overridden; requestedBy gains a user). Decisions are immutable: CEL
transition rules on status reject changing decision, decidedBy or decidedAt once set, and leaving a final
phase (except Rejected/Expired -> Overridden, the audited break-glass).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pydantic
from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.tool import SideEffectLevel

ApprovalOption = Literal["approve", "reject", "edit"]

Address = Annotated[str, Field(min_length=3, max_length=512, pattern=r"^[a-z][a-z0-9-]*:.+$")]
"""A prefixed address such as team:payments, user:alice, slack:#approvals or email:oncall@example.com."""


class ApprovalRequestedBy(meta.Schema):
    """Who or what asked for the approval."""

    execution_ref: meta.Ref | None = Field(default=None, description="The Execution that is waiting.")
    agent_ref: meta.Ref | None = Field(default=None, description="The Agent that is waiting.")
    user: str | None = Field(
        default=None, max_length=254, description="The user who asked, e.g. for a promotion."
    )


class ApprovalAction(meta.Schema):
    """What is to be approved."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "self.type != 'tool_call' || has(self.toolCallRef)",
                "type tool_call needs toolCallRef",
                ".toolCallRef",
            ),
        )
    )

    type: Literal["tool_call", "promotion", "override", "eval"] = Field(
        description="tool_call: a held ToolCall. promotion: a Deployment promotion. override: a break-glass "
        "override of a denial. eval: whether an inconclusive Eval run counts as passed (requestedBy names "
        "its Execution)."
    )
    tool_call_ref: meta.Ref | None = Field(default=None, description="For tool_call: the held ToolCall.")
    tool: meta.Name | None = Field(default=None, description="metadata.name of the Tool being called.")
    input_summary: str | None = Field(
        default=None, max_length=4096, description="Redacted summary of the call's input, shown to approvers."
    )

    @pydantic.model_validator(mode="after")
    def _check_ref(self) -> ApprovalAction:
        if self.type == "tool_call" and self.tool_call_ref is None:
            raise ValueError("type tool_call needs toolCallRef")
        return self


class ApprovalRisk(meta.Schema):
    """How risky the action is."""

    level: SideEffectLevel | None = Field(
        default=None,
        description="Side-effect level of the action, as on Tools (unknown is treated as risky).",
    )
    summary: str | None = Field(default=None, max_length=4096, description="Why the action is risky.")


class ApprovalRouting(meta.Schema):
    """Who decides and by when."""

    approvers: list[Address] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Who may decide, e.g. team:<name> (its approver members) or user:<name>.",
    )
    timeout_minutes: int = Field(
        default=30, ge=1, le=43200, description="Minutes to wait for a decision (default 30)."
    )
    on_timeout: Literal["deny", "approve"] = Field(
        default="deny",
        description="What happens when nobody decides in time: deny (default) or approve. The phase becomes "
        "Expired either way.",
    )


class ApprovalSpec(meta.Schema):
    """The request for a decision."""

    requested_by: ApprovalRequestedBy | None = Field(default=None, description="Who or what is waiting.")
    action: ApprovalAction = Field(description="What is to be approved.")
    policy_ref: meta.Ref | None = Field(default=None, description="The Policy that required the approval.")
    risk: ApprovalRisk | None = Field(default=None, description="Risk level and summary shown to approvers.")
    routing: ApprovalRouting = Field(
        default_factory=ApprovalRouting,
        description="Approvers and timeout (30 minutes, then deny, by default).",
    )
    options: list[ApprovalOption] | None = Field(
        default=None,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Answers approvers may give: approve, reject, edit (approve with an edited input).",
    )
    channels: list[Address] | None = Field(
        default=None,
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Where approvers are notified, e.g. slack:#approvals or email:oncall@example.com.",
    )


class ApprovalOverride(meta.Schema):
    """A break-glass override: who overrode a rejection or an expiry, when and why (stamped by the server)."""

    by: str | None = Field(default=None, max_length=254, description="Who overrode (the authenticated user).")
    at: str | None = Field(default=None, max_length=64, description="When (RFC 3339, the server's clock).")
    reason: str = Field(min_length=1, max_length=4096, description="Why the override was needed.")


class ApprovalReview(meta.Schema):
    """The follow-up review an override needs, until an auditor acknowledges it."""

    required: bool | None = Field(default=None, description="Whether an auditor still has to acknowledge.")
    acknowledged_by: str | None = Field(
        default=None, max_length=254, description="The auditor who acknowledged (the authenticated user)."
    )
    acknowledged_at: str | None = Field(
        default=None, max_length=64, description="When it was acknowledged (RFC 3339, the server's clock)."
    )
    note: str | None = Field(default=None, max_length=4096, description="The auditor's note.")


class ApprovalStatus(meta.Status):
    """The decision. Once made it cannot be changed (enforced by the API server and joch admission)."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)",
                "status.decision is immutable once set",
            ),
            (
                "!has(oldSelf.decidedBy) || (has(self.decidedBy) && self.decidedBy == oldSelf.decidedBy)",
                "status.decidedBy is immutable once set",
            ),
            (
                "!has(oldSelf.decidedAt) || (has(self.decidedAt) && self.decidedAt == oldSelf.decidedAt)",
                "status.decidedAt is immutable once set",
            ),
            (
                "!has(oldSelf.phase) || oldSelf.phase == 'Pending' || (has(self.phase) && (self.phase == "
                "oldSelf.phase || (self.phase == 'Overridden' && oldSelf.phase in ['Rejected', 'Expired'])))",
                "a decided Approval cannot change phase, except Rejected or Expired to Overridden",
            ),
            (
                "!has(oldSelf.override) || (has(self.override) && self.override == oldSelf.override)",
                "status.override is immutable once set",
            ),
            (
                "!has(oldSelf.expiresAt) || (has(self.expiresAt) && self.expiresAt == oldSelf.expiresAt)",
                "status.expiresAt is immutable once set",
            ),
        )
    )

    phase: Literal["Pending", "Approved", "Rejected", "Expired", "Overridden"] | None = Field(
        default=None,
        description="Pending: waiting for a decision. Approved. Rejected. Expired: timed out (onTimeout "
        "applied). Overridden: a rejection or expiry overridden by an audited break-glass.",
    )
    decision: ApprovalOption | None = Field(default=None, description="The answer: approve, reject or edit.")
    decided_by: str | None = Field(default=None, max_length=254, description="Who decided.")
    decided_at: str | None = Field(default=None, max_length=64, description="When it was decided (RFC 3339).")
    rationale: str | None = Field(default=None, max_length=4096, description="The approver's reason.")
    expires_at: str | None = Field(
        default=None, max_length=64, description="When the request times out (RFC 3339)."
    )
    override: ApprovalOverride | None = Field(
        default=None, description="The break-glass override, when phase is Overridden."
    )
    review: ApprovalReview | None = Field(
        default=None, description="The follow-up review of an override (required until acknowledged)."
    )


class Approval(meta.Resource):
    """A request for a human decision about a tool call, promotion or override."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="Approval",
        plural="approvals",
        scope="Namespaced",
        short_names=("appr",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Action", ".spec.action.type", description="What is to be approved."),
            meta.PrinterColumn("Phase", ".status.phase", description="State of the request."),
            meta.PrinterColumn("Decision", ".status.decision", description="The answer."),
            meta.PrinterColumn("Decided By", ".status.decidedBy", description="Who decided."),
            meta.AGE,
            meta.PrinterColumn("Tool", ".spec.action.tool", description="Tool being called.", priority=1),
            meta.PrinterColumn("Risk", ".spec.risk.level", priority=1),
            meta.PrinterColumn("Expires", ".status.expiresAt", "date", priority=1),
        ),
        description="A request for a human decision about a held tool call, a promotion or an override; the "
        "decision is immutable and audited.",
    )

    spec: ApprovalSpec = Field(description="The request for a decision.")
    status: ApprovalStatus | None = Field(default=None, description="The decision, written by the operator.")
