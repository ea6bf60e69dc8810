"""Budget (ops.joch.dev/v1alpha1): spending limits for teams, enforced by the model router and tool gateway.

docs/catalog.md section 2.21 and section 5 (softLimitPct default 0.8); docs/decisions.md D13 (inline Agent
caps are separate; Budget objects are aggregated by the budget service).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pydantic
from pydantic import Field

from joch.api.v1alpha1 import meta

Fraction = Annotated[float, Field(ge=0, le=1)]
"""A share between 0 and 1."""


class BudgetScope(meta.Schema):
    """Who the budget covers."""

    teams: list[meta.Name] | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Names of the Teams (cluster-scoped) whose spending counts against this budget.",
    )


class BudgetLimits(meta.Schema):
    """Spending caps in USD and tokens. Unset caps are not enforced."""

    model_config = pydantic.ConfigDict(
        json_schema_extra=meta.cel_rules(
            (
                "!has(self.dailyUsd) || !has(self.monthlyUsd) || self.dailyUsd <= self.monthlyUsd",
                "dailyUsd must not exceed monthlyUsd",
                ".dailyUsd",
            ),
            (
                "!has(self.perRunUsd) || !has(self.dailyUsd) || self.perRunUsd <= self.dailyUsd",
                "perRunUsd must not exceed dailyUsd",
                ".perRunUsd",
            ),
        )
    )

    monthly_usd: float | None = Field(
        default=None, ge=0, description="Most USD to spend in a calendar month."
    )
    daily_usd: float | None = Field(default=None, ge=0, description="Most USD to spend in a day (UTC).")
    per_run_usd: float | None = Field(
        default=None,
        ge=0,
        description="Most USD one execution may spend; the router checks it before each call.",
    )
    token_limit_daily: int | None = Field(
        default=None, ge=1, description="Most tokens to use in a day (UTC)."
    )


class BudgetEnforcement(meta.Schema):
    """What happens when spending crosses the soft or hard limit."""

    on_soft_limit: Literal["alert", "deny"] = Field(
        default="alert",
        description="At softLimitPct of a limit: alert (default) emits a BudgetWarning event; deny stops new "
        "calls.",
    )
    on_hard_limit: Literal["alert", "deny"] = Field(
        default="deny",
        description="At 100% of a limit: deny (default) stops new calls, and may stop a run partway; alert "
        "only emits a BudgetExceeded event.",
    )
    soft_limit_pct: float = Field(
        default=0.8,
        gt=0,
        le=1,
        description="Share of each limit, above 0 and at most 1, at which the soft limit applies (default "
        "0.8).",
    )


class BudgetAllocation(meta.Schema):
    """How the budget is split between agents."""

    by_agent: dict[str, Fraction] | None = Field(
        default=None,
        max_length=256,
        description="Agent name -> share of every limit (0 to 1) that agent may use.",
    )


class BudgetAttribution(meta.Schema):
    """Which costs are counted against the budget."""

    model: bool | None = Field(default=None, description="Count model (LLM) call costs.")
    tool: bool | None = Field(default=None, description="Count tool call costs.")
    approvals: bool | None = Field(default=None, description="Count the costs of approval steps.")


TimeZone = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
]
"""An IANA time zone name (``UTC``, ``Europe/Berlin``)."""


class BudgetSpec(meta.Schema):
    """Desired state of a Budget."""

    description: str | None = Field(default=None, max_length=4096, description="What the budget is for.")
    time_zone: TimeZone = Field(
        default="UTC",
        description="IANA time zone whose calendar aligns the windows: a day starts at its midnight, a month "
        "on its first day (default UTC).",
    )
    scope: BudgetScope | None = Field(default=None, description="Teams the budget covers.")
    limits: BudgetLimits = Field(description="Spending caps in USD and tokens.")
    enforcement: BudgetEnforcement = Field(
        default_factory=BudgetEnforcement,
        description="Soft and hard limit actions (alert at 80%, deny at 100% by default).",
    )
    allocation: BudgetAllocation | None = Field(default=None, description="Per-agent shares of the limits.")
    attribution: BudgetAttribution | None = Field(default=None, description="Which costs count.")


class BudgetRecentRuns(meta.Schema):
    """Recent executions that went over a limit."""

    over_soft_limit: int | None = Field(default=None, ge=0, description="Runs that crossed the soft limit.")
    over_hard_limit: int | None = Field(
        default=None, ge=0, description="Runs stopped or flagged at the hard limit."
    )


class BudgetWindow(meta.Schema):
    """One calendar window of a Budget, in the style of a ResourceQuota's hard and used."""

    hard: float | None = Field(default=None, ge=0, description="The limit, USD (absent: not capped).")
    soft: float | None = Field(default=None, ge=0, description="The soft limit, USD (hard x softLimitPct).")
    used: float = Field(
        ge=0, description="USD spent in the window: finished runs counted, plus runs still going."
    )
    reserved: float = Field(
        default=0,
        ge=0,
        description="USD held for calls admitted by the decision service and not yet reported.",
    )
    tokens: int = Field(default=0, ge=0, description="Model tokens used in the window.")
    window_start: str = Field(max_length=64, description="When the window began (RFC 3339, UTC).")
    reset_at: str = Field(max_length=64, description="When the next window begins (RFC 3339, UTC).")


class BudgetWindows(meta.Schema):
    """The current day and month."""

    daily: BudgetWindow = Field(description="Today, in spec.timeZone.")
    monthly: BudgetWindow = Field(description="This calendar month, in spec.timeZone.")


class BudgetAgentSpend(meta.Schema):
    """What one agent spent against the budget."""

    day_spent_usd: float = Field(ge=0, description="USD spent today.")
    month_spent_usd: float = Field(ge=0, description="USD spent this month.")
    share: Fraction | None = Field(default=None, description="Its share of the limits (allocation.byAgent).")


class BudgetLedgerEntry(meta.Schema):
    """The total of one calendar period, kept after the period closes."""

    period: str = Field(
        max_length=10, description="The day (YYYY-MM-DD) or month (YYYY-MM), in spec.timeZone."
    )
    spent_usd: float = Field(ge=0, description="USD spent by finished runs counted in the period.")
    tokens: int = Field(default=0, ge=0, description="Model tokens used.")
    executions: int = Field(default=0, ge=0, description="Finished runs counted.")
    by_agent: dict[str, float] | None = Field(
        default=None, max_length=256, description="Agent name -> USD (with allocation.byAgent)."
    )


class BudgetReservation(meta.Schema):
    """USD held for one call the decision service allowed, until the call's cost is reported."""

    id: str = Field(min_length=1, max_length=64, description="The reservation's id (a UUID).")
    amount_usd: float = Field(ge=0, description="The call's estimated cost (context.cost.runUsd), USD.")
    created_at: str = Field(max_length=64, description="When it was made (RFC 3339, UTC).")
    expires_at: str = Field(
        max_length=64, description="When it lapses if nothing released it before (RFC 3339, UTC)."
    )
    agent: meta.Name = Field(description="The Agent that made the call (in the Budget's covered runs).")
    agent_namespace: str | None = Field(default=None, max_length=63, description="The Agent's namespace.")
    execution: meta.Name | None = Field(
        default=None, description="The Execution the call belongs to (context.execution.name), if named."
    )
    baseline_usd: float = Field(
        default=0,
        ge=0,
        description="The Execution's status.costUsd when the reservation was made: once its cost has grown "
        "past baselineUsd + amountUsd (after the earlier reservations of the same run), the call was "
        "reported and the reservation is dropped.",
    )


class BudgetStatus(meta.Status):
    """Observed state of a Budget."""

    phase: Literal["Pending", "WithinBudget", "OverSoftLimit", "OverHardLimit"] | None = Field(
        default=None,
        description="Pending: no spending recorded yet. WithinBudget: below the soft limit. OverSoftLimit: "
        "above the soft limit. OverHardLimit: a limit is reached.",
    )
    month_spent_usd: float | None = Field(default=None, ge=0, description="USD spent this calendar month.")
    day_spent_usd: float | None = Field(default=None, ge=0, description="USD spent today (UTC).")
    recent_runs: BudgetRecentRuns | None = Field(default=None, description="Recent runs over a limit.")
    windows: BudgetWindows | None = Field(default=None, description="The current day and month windows.")
    by_agent: dict[str, BudgetAgentSpend] | None = Field(
        default=None, max_length=256, description="Per-agent spend (with allocation.byAgent)."
    )
    ledger: list[BudgetLedgerEntry] | None = Field(
        default=None,
        max_length=512,
        description="Totals of finished runs per day (the last 62) and per month (the last 24), the open "
        "periods included: closed periods are kept here, never zeroed in place.",
    )
    charging: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None,
        max_length=4096,
        description="Uids of finished Executions added to the ledger whose own status does not say so yet "
        "(the operator's bookkeeping: each run is counted once, across restarts).",
    )
    reservations: list[BudgetReservation] | None = Field(
        default=None,
        max_length=1000,
        description="Calls the decision service allowed whose cost is not reported yet; each is dropped "
        "when it expires, when its Execution finishes or when the Execution's cost shows it. "
        "windows.*.reserved is their sum per window.",
    )


class Budget(meta.Resource):
    """Spending limits for teams, with soft and hard enforcement."""

    crd: ClassVar[meta.CRDInfo] = meta.CRDInfo(
        group="ops.joch.dev",
        kind="Budget",
        plural="budgets",
        scope="Namespaced",
        short_names=("bud",),
        columns=(
            *meta.ready_columns(),
            meta.PrinterColumn("Scope", ".spec.scope.teams", description="Teams the budget covers."),
            meta.PrinterColumn("Daily", ".spec.limits.dailyUsd", "number", description="Daily limit, USD."),
            meta.PrinterColumn(
                "Monthly", ".spec.limits.monthlyUsd", "number", description="Monthly limit, USD."
            ),
            meta.PrinterColumn(
                "Used", ".status.monthSpentUsd", "number", description="Spent this month, USD."
            ),
            meta.PrinterColumn("Phase", ".status.phase"),
            meta.PrinterColumn("Today", ".status.daySpentUsd", "number", priority=1),
            meta.PrinterColumn("Zone", ".spec.timeZone", priority=1),
        ),
        description="Spending limits (USD and tokens) for teams and agents, enforced by the model router and "
        "the tool gateway with a soft (alert) and a hard (deny) limit.",
    )

    spec: BudgetSpec = Field(description="Desired state of the Budget.")
    status: BudgetStatus | None = Field(default=None, description="Observed state, written by the operator.")
