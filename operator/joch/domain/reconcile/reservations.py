"""Budget reservations (pure): whether one call fits the Budgets covering it, what to write to hold its
cost, and when a held cost is let go.

The decision service asks, for a call of Agent ``namespace``/``agent`` (in Execution ``execution``, if
named) estimated at ``amount`` USD (``context.cost.runUsd``), every covering Budget with
``onHardLimit: deny``:

- **per run** (``limits.perRunUsd``): ``amount``, plus the Execution's ``status.costUsd``, plus the
  outstanding reservations of that Execution, must not exceed it;
- **per window** (``limits.dailyUsd``, ``limits.monthlyUsd``): the window's ``used`` (as the budget
  service last wrote it), plus the live reservations made in the window, plus ``amount``, must not
  exceed ``hard``. A window that has closed since the status was written starts empty (as admission
  treats it);
- **fail closed**: a Budget not accounted yet (no ``status.windows``), with an unknown time zone, or
  holding :data:`MAX_RESERVATIONS` live reservations refuses.

When several Budgets apply, the one with the least headroom is reported (:func:`most_restrictive`);
any refusal denies.

**Release rules** (:func:`release`): a reservation is dropped when it expired (``expiresAt``), when
its Execution finished (its real cost is then in the ledger), or when its Execution's ``costUsd`` shows
the call was reported. The reservations of one Execution are laid end to end from the first baseline:
each one ends at ``max(baselineUsd, end of the previous) + amountUsd``, and is reported once the
Execution's cost reaches that end (for a lone reservation: ``costUsd >= baselineUsd + amountUsd``). A
reservation whose Execution is not known (not in the cache yet, or none named) lives until it expires.

The decision path drops only expired reservations when it writes (the budget service writes ``used``,
so it alone drops the reported and finished ones, in the same write that counts their cost).
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api.v1alpha1.budget import Budget
from joch.domain.reconcile import budgets
from joch.domain.reconcile.approvals import parse_time

__all__ = [
    "DEFAULT_TTL_SECONDS",
    "MAX_RESERVATIONS",
    "Call",
    "RunCost",
    "Verdict",
    "add",
    "assess",
    "call_of",
    "live",
    "most_restrictive",
    "new_reservation",
    "next_expiry",
    "release",
    "remove",
    "reserved_in",
]

DEFAULT_TTL_SECONDS: Final = 300.0
MAX_RESERVATIONS: Final = 1000
"""The most live reservations one Budget holds; a call over it is denied (fail closed)."""
REASON: Final = "BudgetExceeded"
_EPSILON: Final = 1e-9


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """What a decision request asks a Budget for."""

    namespace: str
    agent: str
    amount_usd: float
    execution: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunCost:
    """What the cache says of one Execution: its cost so far and whether it finished."""

    cost_usd: float
    finished: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """One Budget's answer: whether the call fits, the USD left after it (negative or -inf when it does
    not), and why not."""

    budget: str
    fits: bool
    headroom: float
    reason: str = ""


def call_of(context: Mapping[str, Any]) -> Call | None:
    """The call a (checked) decision context describes; None without agent.namespace, agent.name and
    cost.runUsd (nothing to reserve)."""
    agent = context.get("agent")
    cost = context.get("cost")
    if not isinstance(agent, Mapping) or not isinstance(cost, Mapping):
        return None
    namespace, name, amount = agent.get("namespace"), agent.get("name"), cost.get("runUsd")
    if not namespace or not name or isinstance(amount, bool) or not isinstance(amount, int | float):
        return None
    execution = context.get("execution")
    run = execution.get("name") if isinstance(execution, Mapping) else None
    return Call(str(namespace), str(name), float(amount), str(run) if run else None)


def _stamp(at: datetime.datetime) -> str:
    text = at.astimezone(datetime.UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _second(at: datetime.datetime) -> str:
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _entries(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = status.get("reservations")
    return [r for r in found if isinstance(r, Mapping)] if isinstance(found, list) else []


def next_expiry(status: Mapping[str, Any]) -> datetime.datetime | None:
    """When the first of the reservations in ``status`` expires (None: it holds none)."""
    times = [t for t in (parse_time(r.get("expiresAt")) for r in _entries(status)) if t is not None]
    return min(times) if times else None


def _amount(reservation: Mapping[str, Any]) -> float:
    value = reservation.get("amountUsd")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _expired(reservation: Mapping[str, Any], now: datetime.datetime) -> bool:
    expires = parse_time(reservation.get("expiresAt"))
    return expires is None or expires <= now


def live(status: Mapping[str, Any], now: datetime.datetime) -> list[dict[str, Any]]:
    """The reservations in ``status`` that have not expired at ``now``."""
    return [dict(r) for r in _entries(status) if not _expired(r, now)]


def _reported(
    reservations: Sequence[Mapping[str, Any]], runs: Mapping[tuple[str, str], RunCost], namespace: str
) -> set[str]:
    """The ids of the reservations whose Execution's cost shows the call (module docstring)."""
    by_run: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for reservation in reservations:
        execution = reservation.get("execution")
        if execution:
            where = (str(reservation.get("agentNamespace") or namespace), str(execution))
            by_run.setdefault(where, []).append(reservation)
    done: set[str] = set()
    for where, held in by_run.items():
        run = runs.get(where)
        if run is None:
            continue
        end = -math.inf
        for reservation in sorted(held, key=lambda r: (str(r.get("createdAt")), str(r.get("id")))):
            baseline = float(reservation.get("baselineUsd") or 0)
            end = max(baseline, end) + _amount(reservation)
            if run.cost_usd + _EPSILON >= end:
                done.add(str(reservation.get("id")))
    return done


def release(
    status: Mapping[str, Any],
    runs: Mapping[tuple[str, str], RunCost],
    now: datetime.datetime,
    *,
    namespace: str,
) -> list[dict[str, Any]]:
    """The reservations the budget service keeps: not expired, their Execution (by (namespace, name)
    in ``runs``) neither finished nor showing the call's cost. ``namespace``: the Budget's, for
    reservations that do not name the Agent's."""
    kept = live(status, now)
    reported = _reported(kept, runs, namespace)
    out = []
    for reservation in kept:
        execution = reservation.get("execution")
        run = (
            runs.get((str(reservation.get("agentNamespace") or namespace), str(execution)))
            if execution
            else None
        )
        if run is not None and run.finished:
            continue
        if str(reservation.get("id")) in reported:
            continue
        out.append(reservation)
    return out


def reserved_in(reservations: Iterable[Mapping[str, Any]], window: budgets.Window) -> float:
    """USD held by ``reservations`` made in ``window``."""
    return round(budgets.held_in(list(reservations), window), 6)


def _refused(key: str, text: str, headroom: float) -> Verdict:
    return Verdict(key, False, headroom, f"{REASON}: Budget {key}: {text} (onHardLimit: deny)")


def assess(
    key: str,
    budget: Budget,
    status: Mapping[str, Any],
    call: Call,
    *,
    run: RunCost | None,
    now: datetime.datetime,
) -> Verdict:
    """Whether ``call`` fits Budget ``key`` (``onHardLimit: deny``) with ``status`` as stored; ``run``:
    the call's Execution as the cache holds it (None: not named or not known)."""
    windows = status.get("windows")
    if not isinstance(windows, Mapping):
        return _refused(key, "its state is unknown (not accounted yet); try again shortly", -math.inf)
    try:
        tz = budgets.time_zone(budget.spec.time_zone)
    except ValueError:
        return _refused(key, f"its state is unknown (spec.timeZone {budget.spec.time_zone!r})", -math.inf)
    held = live(status, now)
    if len(held) >= MAX_RESERVATIONS:
        return _refused(
            key, f"it holds {len(held)} reservations, the most it may; try again shortly", -math.inf
        )
    amount = call.amount_usd
    limits = budget.spec.limits
    verdicts: list[Verdict] = []
    if limits.per_run_usd is not None:
        spent = 0.0
        if call.execution is not None:
            mine = [
                r
                for r in held
                if r.get("execution") == call.execution
                and str(r.get("agentNamespace") or call.namespace) == call.namespace
            ]
            cost = run.cost_usd if run is not None else 0.0
            runs = {(call.namespace, call.execution): RunCost(cost, False)}
            reported = _reported(mine, runs, call.namespace)
            spent = cost + sum(_amount(r) for r in mine if str(r.get("id")) not in reported)
        total = spent + amount
        headroom = limits.per_run_usd - total
        text = f"per run: spent and held {spent:g} of {limits.per_run_usd:g} USD, this call {amount:g} USD"
        if call.execution is not None:
            text = f"per run (Execution {call.execution}): " + text.removeprefix("per run: ")
        verdicts.append(
            _refused(key, text, headroom)
            if total > limits.per_run_usd + _EPSILON
            else Verdict(key, True, headroom)
        )
    for label, hard, window in (
        ("daily", limits.daily_usd, budgets.day_window(now, tz)),
        ("monthly", limits.monthly_usd, budgets.month_window(now, tz)),
    ):
        if hard is None:
            continue
        stored = windows.get(label)
        used = 0.0
        if isinstance(stored, Mapping) and parse_time(stored.get("windowStart")) == window.start:
            used = float(stored.get("used") or 0)
        reserved = reserved_in(held, window)
        total = used + reserved + amount
        text = (
            f"{label} window {_second(window.start)}..{_second(window.reset)}: used {used:g} "
            f"and reserved {reserved:g} of {hard:g} USD, this call {amount:g} USD"
        )
        verdicts.append(
            _refused(key, text, hard - total) if total > hard + _EPSILON else Verdict(key, True, hard - total)
        )
    if not verdicts:
        return Verdict(key, True, math.inf)
    return most_restrictive(verdicts)


def most_restrictive(verdicts: Sequence[Verdict]) -> Verdict:
    """The verdict that decides: a refusal if any (the one with least headroom), else the fitting one
    with least headroom."""
    if not verdicts:
        raise ValueError("no verdicts")
    refused = [v for v in verdicts if not v.fits]
    return min(refused or verdicts, key=lambda v: (v.headroom, v.budget))


def new_reservation(
    reservation_id: str,
    call: Call,
    *,
    run: RunCost | None,
    now: datetime.datetime,
    ttl_seconds: float,
) -> dict[str, Any]:
    """The reservation of ``call`` made at ``now`` (status.reservations shape)."""
    out: dict[str, Any] = {
        "id": reservation_id,
        "amountUsd": round(call.amount_usd, 9),
        "createdAt": _stamp(now),
        "expiresAt": _stamp(now + datetime.timedelta(seconds=ttl_seconds)),
        "agent": call.agent,
        "agentNamespace": call.namespace,
        "baselineUsd": round(run.cost_usd, 9) if run is not None else 0.0,
    }
    if call.execution is not None:
        out["execution"] = call.execution
    return out


def _patch(budget: Budget, kept: list[dict[str, Any]], now: datetime.datetime) -> dict[str, Any]:
    tz = budgets.time_zone(budget.spec.time_zone)
    return {
        "reservations": kept or None,
        "windows": {
            "daily": {"reserved": reserved_in(kept, budgets.day_window(now, tz))},
            "monthly": {"reserved": reserved_in(kept, budgets.month_window(now, tz))},
        },
    }


def add(
    budget: Budget, status: Mapping[str, Any], reservation: Mapping[str, Any], now: datetime.datetime
) -> dict[str, Any]:
    """The status merge patch adding ``reservation`` (the live ones kept, the expired dropped, the
    windows' ``reserved`` summed again). The caller assessed the call against ``status`` first."""
    kept = [r for r in live(status, now) if r.get("id") != reservation.get("id")]
    return _patch(budget, [*kept, dict(reservation)], now)


def remove(
    budget: Budget, status: Mapping[str, Any], reservation_id: str, now: datetime.datetime
) -> dict[str, Any] | None:
    """The status merge patch taking reservation ``reservation_id`` back (None: it is not there)."""
    held = _entries(status)
    if not any(r.get("id") == reservation_id for r in held):
        return None
    return _patch(budget, [r for r in live(status, now) if r.get("id") != reservation_id], now)
