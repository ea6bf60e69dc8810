"""Budget accounting (pure): which runs a Budget covers, the calendar windows, the ledger, the status.

A **run** (:class:`Run`) is what the budget service keeps of an Execution: its cost and tokens so far,
when its cost counts (``status.startedAt``, else its creation), whether it finished, and which Budgets
already counted it (``status.budgetsCharged``).

**Counting exactly once.** A finished run's cost goes into the Budget's ``status.ledger`` (one entry per
day and per month of the run's start, in the Budget's time zone) in the same status write that adds the
run's uid to ``status.charging``; then the run's own status gets the Budget in ``budgetsCharged``; then
the uid leaves ``charging``. A run is charged only when it is in neither place, so a restart, a repeated
event or a re-list between any two of those writes never counts it twice, and a finished Execution is
kept (retention) until every Budget covering it has counted it (:func:`uncharged`). Runs still going are
added to the open windows' ``used`` from the cache at each status computation and never written to the
ledger until they finish.

**Windows** are calendar periods of ``spec.timeZone`` (default UTC): the day from its local midnight, the
month from its first day, never "24 hours from the first request". ``windowStart`` and ``resetAt`` are
written in UTC. A closed period stays in the ledger (the last :data:`KEEP_DAYS` days and
:data:`KEEP_MONTHS` months), so last month's spend can still be read.

**Coverage** (:func:`covers`): a Budget covers a run when its ``scope.teams`` names the Team owning the
run's namespace, when the Agent's Environment lists it in ``budgetRefs`` (a reference without a namespace
meaning the run's namespace), or when the owning Team lists its name in ``budgetRefs`` and the Budget is
in one of the Team's namespaces.
"""

from __future__ import annotations

import dataclasses
import datetime
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.budget import Budget, BudgetStatus
from joch.api.v1alpha1.environment import Environment
from joch.api.v1alpha1.team import Team
from joch.domain.compilation import scope
from joch.domain.reconcile import executions
from joch.domain.reconcile.approvals import parse_time
from joch.domain.reconcile.cache import Entry, Store
from joch.domain.reconcile.status import condition, merge_conditions
from joch.domain.reconcile.times import format_time
from joch.domain.settings import OperatorSettings

__all__ = [
    "KEEP_DAYS",
    "KEEP_MONTHS",
    "MAX_AGENTS",
    "OTHER_AGENTS",
    "OWNED_CONDITIONS",
    "Run",
    "SpendRow",
    "Window",
    "budget_key",
    "budget_status",
    "charge",
    "covering",
    "covers",
    "day_window",
    "exceeded",
    "held_in",
    "invalid_status",
    "month_window",
    "parse_time",
    "periods",
    "run_of",
    "settle",
    "spend",
    "time_zone",
    "to_charge",
    "uncharged",
]

MAX_CHARGING: Final = 4096
"""The most uids ``status.charging`` holds (its schema's bound): :func:`to_charge` hands out no more new
runs than fit, and the service comes back for the rest."""
MAX_AGENTS: Final = 256
"""The most agents a ledger entry names; the spend of any more is summed under :data:`OTHER_AGENTS`."""
OTHER_AGENTS: Final = "(other)"
KEEP_DAYS: Final = 62
KEEP_MONTHS: Final = 24
OWNED_CONDITIONS: Final = ("Ready", "SoftLimitReached", "HardLimitReached", "Stalled")
_EPSILON: Final = 1e-9


def budget_key(namespace: str, name: str) -> str:
    """How a run's ``budgetsCharged`` names a Budget: ``namespace/name``."""
    return f"{namespace}/{name}"


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """What the budget service keeps of one Execution."""

    uid: str
    namespace: str
    name: str
    agent: str
    cost_usd: float
    tokens: int
    at: datetime.datetime
    """When its cost counts (UTC): ``status.startedAt``, else its creation."""
    finished: bool
    charged: frozenset[str] = frozenset()
    """``status.budgetsCharged``: the Budgets that counted it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """One calendar period in a time zone: its key (``YYYY-MM-DD`` or ``YYYY-MM``) and UTC bounds."""

    key: str
    start: datetime.datetime
    reset: datetime.datetime

    def holds(self, at: datetime.datetime) -> bool:
        return self.start <= at < self.reset


def time_zone(name: str | None) -> datetime.tzinfo:
    """The zone named ``name`` (None or empty: UTC); ValueError naming it when unknown."""
    if not name or name == "UTC":
        return datetime.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _utc(local: datetime.datetime) -> datetime.datetime:
    return local.astimezone(datetime.UTC)


def day_window(now: datetime.datetime, tz: datetime.tzinfo) -> Window:
    """The day holding ``now`` in ``tz`` (a DST day is 23 or 25 hours long)."""
    local = now.astimezone(tz)
    start = datetime.datetime(local.year, local.month, local.day, tzinfo=tz)
    following = start.date() + datetime.timedelta(days=1)
    reset = datetime.datetime(following.year, following.month, following.day, tzinfo=tz)
    return Window(start.strftime("%Y-%m-%d"), _utc(start), _utc(reset))


def month_window(now: datetime.datetime, tz: datetime.tzinfo) -> Window:
    """The calendar month holding ``now`` in ``tz``."""
    local = now.astimezone(tz)
    start = datetime.datetime(local.year, local.month, 1, tzinfo=tz)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    reset = datetime.datetime(year, month, 1, tzinfo=tz)
    return Window(start.strftime("%Y-%m"), _utc(start), _utc(reset))


def periods(at: datetime.datetime, tz: datetime.tzinfo) -> tuple[str, str]:
    """The (day, month) ledger keys of a run that counts at ``at``."""
    return day_window(at, tz).key, month_window(at, tz).key


def run_of(entry: Entry) -> Run | None:
    """The run of an Execution entry (None when its spec does not name an Agent)."""
    source = entry.document()
    spec = source.get("spec") if isinstance(source.get("spec"), dict) else {}
    agent = ((spec or {}).get("agentRef") or {}).get("name")
    if not agent:
        return None
    status = entry.status
    at = parse_time(status.get("startedAt")) or parse_time(
        (source.get("metadata") or {}).get("creationTimestamp")
    )
    charged = status.get("budgetsCharged")
    return Run(
        uid=entry.uid,
        namespace=entry.namespace or "",
        name=entry.name,
        agent=str(agent),
        cost_usd=float(status.get("costUsd") or 0),
        tokens=int(status.get("tokens") or 0),
        at=at or datetime.datetime.now(datetime.UTC),
        finished=executions.is_terminal(status),
        charged=frozenset(str(k) for k in charged) if isinstance(charged, list) else frozenset(),
    )


# --- coverage ---------------------------------------------------------------------------------------


def covers(
    budget: Budget,
    *,
    namespace: str,
    team: Team | None,
    environment: Environment | None,
) -> bool:
    """Whether ``budget`` counts the runs of namespace ``namespace``, owned by ``team`` and run in
    ``environment`` (module docstring)."""
    budget_ns = budget.metadata.namespace or ""
    name = budget.metadata.name
    if team is not None:
        if budget.spec.scope is not None and team.metadata.name in (budget.spec.scope.teams or ()):
            return True
        if name in (team.spec.budget_refs or ()) and budget_ns in (team.spec.namespaces or ()):
            return True
    if environment is not None:
        for ref in environment.spec.budget_refs or ():
            if ref.name == name and (ref.namespace or namespace) == budget_ns:
                return True
    return False


def covering(store: Store, settings: OperatorSettings, namespace: str, agent: str) -> list[str]:
    """The keys of every Budget in ``store`` that covers the runs of Agent ``namespace``/``agent``."""
    team = store.team_for_namespace(namespace)
    found = store.get(Agent, namespace, agent)
    environment = None
    if found is not None:
        name = scope.environment_of(found, store.namespace_labels(namespace), settings)
        environment = store.get(Environment, None, name)
    keys = []
    for entry in store.entries("Budget"):
        budget = entry.obj
        if isinstance(budget, Budget) and covers(
            budget, namespace=namespace, team=team, environment=environment
        ):
            keys.append(budget_key(entry.namespace or "", entry.name))
    return sorted(keys)


def exceeded(
    store: Store, settings: OperatorSettings, namespace: str, agent: str, now: datetime.datetime
) -> list[str]:
    """Why a new run of Agent ``namespace``/``agent`` must be refused: one message per covering Budget
    with ``onHardLimit: deny`` whose current day or month has reached its hard limit (or its day's
    tokens theirs), naming the Budget, the window, what was used and the limit. A covering Budget the
    operator has not accounted yet (no ``status.windows``) refuses too: its state is unknown."""
    messages = []
    for key in covering(store, settings, namespace, agent):
        budget_ns, _, name = key.partition("/")
        entry = store.entry("Budget", budget_ns, name)
        budget = entry.obj if entry is not None else None
        if entry is None or not isinstance(budget, Budget) or budget.spec.enforcement.on_hard_limit != "deny":
            continue
        windows = entry.status.get("windows")
        if not isinstance(windows, Mapping):
            messages.append(
                f"Budget {key} has not been accounted yet (its spend is unknown); try again shortly"
            )
            continue
        for label, limit_tokens in (("daily", budget.spec.limits.token_limit_daily), ("monthly", None)):
            window = windows.get(label)
            if not isinstance(window, Mapping):
                continue
            reset = parse_time(window.get("resetAt"))
            if reset is None or reset <= now:
                continue  # a window that has closed since the status was written: a new one is empty
            used, hard = float(window.get("used") or 0), window.get("hard")
            reserved = float(window.get("reserved") or 0)
            if isinstance(hard, (int, float)) and used + reserved + _EPSILON >= hard:
                messages.append(
                    f"Budget {key}: {label} window {window.get('windowStart')}..{window.get('resetAt')} used "
                    f"{used:g} of {hard:g} USD (onHardLimit: deny)"
                )
            tokens = int(window.get("tokens") or 0)
            if limit_tokens is not None and tokens >= limit_tokens:
                messages.append(
                    f"Budget {key}: daily tokens used {tokens} of {limit_tokens} (onHardLimit: deny)"
                )
    return messages


# --- charging ----------------------------------------------------------------------------------------


def to_charge(key: str, runs: Iterable[Run], charging: Sequence[str]) -> tuple[list[Run], list[Run]]:
    """(runs to add to the ledger now, runs already in it whose status must still say so) among the
    finished ``runs`` the Budget ``key`` covers. At most as many new runs as ``charging`` has room for
    (:data:`MAX_CHARGING`); the others are new in a later pass."""
    pending = set(charging)
    new: list[Run] = []
    mark: list[Run] = []
    for run in runs:
        if not run.finished or key in run.charged:
            continue
        (mark if run.uid in pending else new).append(run)
    return new[: max(0, MAX_CHARGING - len(pending))], mark


def uncharged(run: Run, covering: Iterable[str]) -> list[str]:
    """The Budgets (keys) covering a finished run that have not counted it yet (retention waits)."""
    return sorted(set(covering) - run.charged)


def _ledger(status: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        str(entry["period"]): dict(entry)
        for entry in status.get("ledger") or ()
        if isinstance(entry, Mapping) and entry.get("period")
    }


def _prune(ledger: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    days = sorted(k for k in ledger if len(k) == 10)[-KEEP_DAYS:]
    months = sorted(k for k in ledger if len(k) == 7)[-KEEP_MONTHS:]
    return [ledger[k] for k in (*months, *days)]


def charge(
    status: Mapping[str, Any], runs: Sequence[Run], tz: datetime.tzinfo, *, by_agent: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """The ledger and ``charging`` list after adding ``runs`` (finished, not yet counted)."""
    ledger = _ledger(status)
    for run in runs:
        for period in periods(run.at, tz):
            entry = ledger.setdefault(
                period, {"period": period, "spentUsd": 0.0, "tokens": 0, "executions": 0}
            )
            entry["spentUsd"] = round(float(entry.get("spentUsd") or 0) + run.cost_usd, 9)
            entry["tokens"] = int(entry.get("tokens") or 0) + run.tokens
            entry["executions"] = int(entry.get("executions") or 0) + 1
            if by_agent:
                agents = dict(entry.get("byAgent") or {})
                agent = run.agent if run.agent in agents or len(agents) < MAX_AGENTS - 1 else OTHER_AGENTS
                agents[agent] = round(float(agents.get(agent) or 0) + run.cost_usd, 9)
                entry["byAgent"] = agents
    charging = list(dict.fromkeys([*(status.get("charging") or ()), *(run.uid for run in runs)]))
    return _prune(ledger), charging


def settle(charging: Sequence[str], marked: Iterable[str], gone: Iterable[str] = ()) -> list[str]:
    """``charging`` without the uids whose runs now say they were counted, or that no longer exist."""
    done = {*marked, *gone}
    return [uid for uid in charging if uid not in done]


# --- status --------------------------------------------------------------------------------------------


_stamp = format_time


def _money(value: float) -> float:
    return round(value, 6)


def _window(
    window: Window,
    ledger: Mapping[str, Mapping[str, Any]],
    running: Sequence[Run],
    *,
    hard: float | None,
    soft_pct: float,
    reserved: float,
) -> dict[str, Any]:
    entry = ledger.get(window.key) or {}
    live = [run for run in running if window.holds(run.at)]
    out: dict[str, Any] = {
        "used": _money(float(entry.get("spentUsd") or 0) + sum(run.cost_usd for run in live)),
        "reserved": _money(reserved),
        "tokens": int(entry.get("tokens") or 0) + sum(run.tokens for run in live),
        "windowStart": _stamp(window.start),
        "resetAt": _stamp(window.reset),
    }
    if hard is not None:
        out["hard"] = hard
        out["soft"] = _money(hard * soft_pct)
    return out


def held_in(reservations: Sequence[Mapping[str, Any]], window: Window) -> float:
    """USD held by the reservations made in ``window``."""
    total = 0.0
    for reservation in reservations:
        created = parse_time(reservation.get("createdAt"))
        amount = reservation.get("amountUsd")
        if created is not None and window.holds(created) and isinstance(amount, int | float):
            total += float(amount)
    return total


def _reached(
    daily: Mapping[str, Any], monthly: Mapping[str, Any], token_limit: int | None
) -> tuple[list[str], list[str]]:
    """(hard limits reached, soft limits reached), each as a message naming window, used and limit."""
    hard_hits, soft_hits = [], []
    for label, window in (("daily", daily), ("monthly", monthly)):
        hard = window.get("hard")
        if hard is None:
            continue
        used = window["used"]
        text = f"{label} window {window['windowStart']}..{window['resetAt']}: used {used:g} of {hard:g} USD"
        if used + _EPSILON >= hard:
            hard_hits.append(text)
        elif used + _EPSILON >= window["soft"]:
            soft_hits.append(f"{text} (soft limit {window['soft']:g})")
    if token_limit is not None and daily["tokens"] >= token_limit:
        hard_hits.append(f"daily tokens: used {daily['tokens']} of {token_limit}")
    return hard_hits, soft_hits


def _conditions(
    budget: Budget, hits: tuple[list[str], list[str]], summary: str, *, spent: bool
) -> tuple[str, list[dict[str, Any]]]:
    """(phase, conditions) from the limits reached."""
    generation = budget.metadata.generation
    hard_hits, soft_hits = hits
    if hard_hits:
        deny = budget.spec.enforcement.on_hard_limit == "deny"
        message = "; ".join(hard_hits) + (" (new runs and calls are denied)" if deny else " (alert only)")
        return "OverHardLimit", [
            condition("Ready", "True", "HardLimitReached", message, generation),
            condition("HardLimitReached", "True", "HardLimitReached", message, generation),
            condition("SoftLimitReached", "True", "HardLimitReached", message, generation),
        ]
    below = condition("HardLimitReached", "False", "WithinLimit", "no limit reached", generation)
    ready = condition("Ready", "True", "Accounted", summary, generation)
    if soft_hits:
        soft = condition("SoftLimitReached", "True", "SoftLimitReached", "; ".join(soft_hits), generation)
        return "OverSoftLimit", [ready, below, soft]
    soft = condition("SoftLimitReached", "False", "WithinLimit", "below the soft limit", generation)
    return ("WithinBudget" if spent else "Pending"), [ready, below, soft]


def _by_agent(
    shares: Mapping[str, float],
    by_period: Mapping[str, Mapping[str, Any]],
    running: Sequence[Run],
    windows: tuple[Window, Window],
) -> dict[str, dict[str, Any]]:
    agents: dict[str, dict[str, Any]] = {}
    for agent in sorted({*shares, *(r.agent for r in running)}):
        spent = []
        for window in windows:
            entry = by_period.get(window.key) or {}
            live = sum(r.cost_usd for r in running if r.agent == agent and window.holds(r.at))
            spent.append(_money(float((entry.get("byAgent") or {}).get(agent) or 0) + live))
        agents[agent] = {"daySpentUsd": spent[0], "monthSpentUsd": spent[1]}
        if agent in shares:
            agents[agent]["share"] = shares[agent]
    return agents


def budget_status(
    budget: Budget,
    *,
    current: Mapping[str, Any],
    ledger: Sequence[Mapping[str, Any]] | None = None,
    charging: Sequence[str] | None = None,
    running: Sequence[Run] = (),
    reserved: tuple[float, float] = (0.0, 0.0),
    reservations: Sequence[Mapping[str, Any]] | None = None,
    now: datetime.datetime,
) -> dict[str, Any]:
    """The status of ``budget`` at ``now``: windows, per-agent spend, phase and conditions.

    ``ledger``/``charging``: as :func:`charge` left them (default: the current ones); ``running``: the
    covered runs that have not finished; ``reserved``: USD the decision service holds (day, month);
    ``reservations``: the reservations kept (joch.domain.reconcile.reservations.release), written to
    ``status.reservations`` with ``reserved`` summed from them per window (None: leave them alone)."""
    tz = time_zone(budget.spec.time_zone)
    entries = list(ledger if ledger is not None else current.get("ledger") or ())
    by_period = {str(e["period"]): e for e in entries if isinstance(e, Mapping) and e.get("period")}
    limits, pct = budget.spec.limits, budget.spec.enforcement.soft_limit_pct
    day, month = day_window(now, tz), month_window(now, tz)
    if reservations is not None:
        reserved = (held_in(reservations, day), held_in(reservations, month))
    daily = _window(day, by_period, running, hard=limits.daily_usd, soft_pct=pct, reserved=reserved[0])
    monthly = _window(month, by_period, running, hard=limits.monthly_usd, soft_pct=pct, reserved=reserved[1])
    summary = f"today {daily['used']:g} USD, this month {monthly['used']:g} USD"
    phase, conditions = _conditions(
        budget,
        _reached(daily, monthly, limits.token_limit_daily),
        summary,
        spent=bool(by_period or running),
    )
    desired: dict[str, Any] = {
        "phase": phase,
        "daySpentUsd": daily["used"],
        "monthSpentUsd": monthly["used"],
        "windows": {"daily": daily, "monthly": monthly},
        "ledger": [dict(e) for e in entries],
        "charging": list(charging if charging is not None else current.get("charging") or ()),
        "conditions": merge_conditions(
            conditions, current.get("conditions"), _stamp(now), owned=OWNED_CONDITIONS
        ),
    }
    if reservations is not None and (reservations or current.get("reservations")):
        desired["reservations"] = [dict(r) for r in reservations] or None
    shares = budget.spec.allocation.by_agent if budget.spec.allocation is not None else None
    if shares:
        desired["byAgent"] = _by_agent(shares, by_period, running, (day, month))
    if budget.metadata.generation is not None:
        desired["observedGeneration"] = budget.metadata.generation
    BudgetStatus.model_validate(desired)
    return desired


def invalid_status(
    error: str, *, generation: int | None, current: Mapping[str, Any], now: str
) -> dict[str, Any]:
    """The status of a Budget that cannot be accounted (its spec does not parse, or names an unknown
    time zone): Ready False and Stalled True (InvalidSpec) naming the problem, and no windows or phase, so
    that admission and the decision service treat its state as unknown and refuse (fail closed). The
    ledger, ``charging`` and the reservations are kept."""
    message = f"the Budget cannot be accounted: {error}"
    conditions = [
        condition("Ready", "False", "InvalidSpec", message, generation),
        condition("Stalled", "True", "InvalidSpec", message, generation),
    ]
    desired: dict[str, Any] = {
        "phase": None,
        "windows": None,
        "conditions": merge_conditions(conditions, current.get("conditions"), now, owned=OWNED_CONDITIONS),
    }
    if generation is not None:
        desired["observedGeneration"] = generation
    BudgetStatus.model_validate(desired)
    return desired


# --- reading the ledger back (joch cost) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class SpendRow:
    """What one team or agent spent against one Budget since a period."""

    who: str
    budget: str
    """``namespace/name``."""
    spent_usd: float
    executions: int | None
    """Runs counted (per team; None per agent: the ledger does not split the count)."""


def spend(budgets: Iterable[Mapping[str, Any]], *, by: str, since: str) -> list[SpendRow]:
    """Spend per team (``by="team"``: each team the Budget's ``scope.teams`` names, ``-`` for none) or
    per agent (``by="agent"``) from the ledgers of ``budgets`` (stored objects), summing the month entries
    from ``since`` (``YYYY-MM``) or the day entries from it (``YYYY-MM-DD``), sorted by spend, highest
    first. A run that several Budgets cover appears in each of them."""
    daily = len(since) == 10
    rows: list[SpendRow] = []
    for body in budgets:
        metadata = body.get("metadata") or {}
        key = budget_key(str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))
        entries = [
            e
            for e in (body.get("status") or {}).get("ledger") or ()
            if isinstance(e, Mapping)
            and len(str(e.get("period") or "")) == (10 if daily else 7)
            and str(e["period"]) >= since
        ]
        if by == "agent":
            agents: dict[str, float] = {}
            for entry in entries:
                for agent, usd in (entry.get("byAgent") or {}).items():
                    agents[agent] = agents.get(agent, 0.0) + float(usd)
            rows += [SpendRow(agent, key, _money(usd), None) for agent, usd in agents.items()]
            continue
        total = _money(sum(float(e.get("spentUsd") or 0) for e in entries))
        runs = sum(int(e.get("executions") or 0) for e in entries)
        teams = ((body.get("spec") or {}).get("scope") or {}).get("teams") or ["-"]
        rows += [SpendRow(str(team), key, total, runs) for team in teams]
    return sorted(rows, key=lambda row: (-row.spent_usd, row.who, row.budget))
