"""One decision, as every face of the decision service makes it: :class:`Decider`.

``await decider(request)`` (a checked :class:`~joch.decision_service.requests.EvaluateRequest`):

1. :class:`NotReady` until the initial listing of Policies is loaded;
2. the service's decision at the clock's ``now``;
3. unless the request is a preflight, the budget step (joch.controllers.reservations.BudgetGate in
   ``joch operator``): it may turn the decision into a ``BudgetExceeded`` deny, and returns what the
   answer carries besides it (``reservation``, or the ``budget`` that denied);
4. the decision counted in ``joch_policy_decisions_total{outcome,source}``.

The HTTP endpoint (joch.decision_service.endpoint) and the gRPC server (joch.grpc: PolicyService and
ext_authz) each hold one and answer NotReady in their own way (503; UNAVAILABLE).
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from joch import metrics
from joch.decision_service import requests
from joch.decision_service.service import DecisionService
from joch.domain.policy.decision import Decision

__all__ = ["BudgetStep", "Clock", "Decider", "NotReady"]

Clock = Callable[[], datetime.datetime]
BudgetStep = Callable[
    [Mapping[str, Any], Decision, datetime.datetime], Awaitable[tuple[Decision, Mapping[str, Any] | None]]
]
"""(context, decision, now) -> (the decision, what the response carries besides it)."""


class NotReady(Exception):
    """The policies are not loaded yet; retry shortly."""


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class Decider:
    """The decision step over ``service`` (module docstring); ``source`` labels the metric."""

    def __init__(
        self,
        service: DecisionService,
        *,
        source: str,
        budgets: BudgetStep | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self.service = service
        self.source = source
        self.budgets = budgets
        self.clock = clock

    async def __call__(self, request: requests.EvaluateRequest) -> tuple[Decision, Mapping[str, Any] | None]:
        if not self.service.ready:
            raise NotReady("the policies are not loaded yet; retry shortly")
        now = self.clock()
        decision = self.service.decide(request, now=now)
        extra: Mapping[str, Any] | None = None
        if self.budgets is not None and not request.preflight:
            decision, extra = await self.budgets(request.context, decision, now)
        metrics.record_policy_decision(decision.decision, source=self.source)
        return decision, extra
