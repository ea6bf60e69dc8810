"""ToolCall (runtime.joch.dev/v1alpha1): one call of a Tool by an Agent, recorded by the tool gateway.

docs/catalog.md section 2.9 and section 4.3 (hook decisions). Users do not write ToolCalls. Calls that share
an idempotencyKey collapse into one within the gateway's window. Decision D3: docs/decisions.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from joch.api.v1alpha1 import meta
from joch.api.v1alpha1.tool import SideEffectLevel

_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ToolCallSideEffects(meta.Schema):
    """The call's side effects, copied from the Tool."""

    level: SideEffectLevel | None = Field(
        default=None,
        description="read_only, local_write, external_write, financial, communication, code_execution, "
        "privileged, or unknown (treated as risky).",
    )
    idempotent: bool | None = Field(default=None, description="Whether repeating the call is safe.")
    idempotency_key: str | None = Field(
        default=None,
        max_length=512,
        description="Calls with the same key collapse into one (default: agent + tool + hash of the "
        "arguments).",
    )


class ToolCallApproval(meta.Schema):
    """Human approval of this call."""

    required: bool | None = Field(default=None, description="Whether the call needed approval.")
    status: Literal["pending", "approved", "rejected", "expired", "overridden"] | None = Field(
        default=None,
        description="Outcome of the Approval: pending, approved, rejected, expired or overridden.",
    )
    approval_ref: meta.Ref | None = Field(default=None, description="The Approval object.")
    approved_by: str | None = Field(default=None, max_length=254, description="Who decided.")
    approved_at: str | None = Field(
        default=None, max_length=64, description="When it was decided (RFC 3339)."
    )


class ToolCallHookContext(meta.Schema):
    """AOS identifiers of the step that made the call."""

    aos_turn_id: str | None = Field(
        default=None, max_length=36, pattern=_UUID, description="AOS turn id (UUID)."
    )
    aos_step_id: str | None = Field(
        default=None, max_length=36, pattern=_UUID, description="AOS step id (UUID)."
    )


class ToolCallSpec(meta.Schema):
    """The call as requested."""

    execution_ref: meta.Ref = Field(description="The Execution the call belongs to.")
    agent_ref: meta.Ref = Field(description="The Agent that made the call.")
    tool_ref: meta.Ref = Field(description="The Tool called, by metadata.name (decision D3).")
    input: meta.JSONObject | None = Field(
        default=None, description="Arguments of the call, as sent (after redaction)."
    )
    side_effects: ToolCallSideEffects | None = Field(
        default=None, description="Side-effect level and idempotency."
    )
    approval: ToolCallApproval | None = Field(default=None, description="Approval of the call, if needed.")
    hook_context: ToolCallHookContext | None = Field(default=None, description="AOS turn and step ids.")


class HookDecision(meta.Schema):
    """One policy decision about the call (catalog section 4.3)."""

    hook: Literal["steps/toolCallRequest", "steps/toolCallResult"] = Field(
        description="The hook: steps/toolCallRequest (before the call) or steps/toolCallResult (on the "
        "result)."
    )
    decision: Literal["allow", "deny", "modify"] = Field(
        description="allow: proceed. deny: block. modify: proceed with an edited request or result."
    )
    policy_id: str | None = Field(default=None, max_length=253, description="metadata.name of the Policy.")
    policy_version: str | None = Field(
        default=None, max_length=32, pattern=r"^v[0-9]+$", description="Policy version, v<generation>."
    )
    reason: str | None = Field(default=None, max_length=4096, description="Why, as sent to the agent.")


class ToolCallStatus(meta.Status):
    """What happened to the call."""

    phase: (
        Literal["Requested", "WaitingForApproval", "Approved", "Denied", "Running", "Succeeded", "Failed"]
        | None
    ) = Field(
        default=None,
        description="Requested: received by the gateway. WaitingForApproval: held for an Approval. Approved: "
        "approved, not started. Denied: blocked by a policy or an approver. Running: in progress. Succeeded: "
        "returned a result. Failed: the tool failed.",
    )
    started_at: str | None = Field(
        default=None, max_length=64, description="When the call started (RFC 3339)."
    )
    completed_at: str | None = Field(default=None, max_length=64, description="When it ended (RFC 3339).")
    output: meta.JSONObject | None = Field(default=None, description="Result of the call (after redaction).")
    error: str | None = Field(
        default=None, max_length=4096, description="Error message when the call failed."
    )
    hook_decisions: list[HookDecision] | None = Field(
        default=None, max_length=64, description="Policy decisions about the call, in order."
    )


class ToolCall(meta.Resource):
    """One call of a Tool by an Agent during an Execution, with its policy decisions and result."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="runtime.joch.dev",
        kind="ToolCall",
        plural="toolcalls",
        scope="Namespaced",
        short_names=("tc",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Phase", ".status.phase", description="State of the call."),
            meta.PrinterColumn("Tool", ".spec.toolRef.name", description="Tool called."),
            meta.PrinterColumn("Agent", ".spec.agentRef.name", description="Calling agent."),
            meta.PrinterColumn("Execution", ".spec.executionRef.name", priority=1),
            meta.PrinterColumn("Level", ".spec.sideEffects.level", priority=1),
        ),
        description="One call of a Tool by an Agent during an Execution, recorded by the tool gateway: "
        "input, side effects, approval, policy decisions and result.",
    )

    spec: ToolCallSpec = Field(description="The call as requested.")
    status: ToolCallStatus | None = Field(
        default=None, description="What happened, written by the tool gateway."
    )
