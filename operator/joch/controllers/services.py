"""The operator's services, in the order they hear about each change (see joch.controllers.service).

Adding a service: write its module (a :class:`~joch.controllers.service.Service` subclass) and add it
here.
"""

from __future__ import annotations

from joch.controllers.agbom import AgBOMService
from joch.controllers.approvals import ApprovalService
from joch.controllers.budgets import BudgetService
from joch.controllers.compile import CompileService
from joch.controllers.evals import EvalService
from joch.controllers.executions import ExecutionService
from joch.controllers.referenced import ReferencedStatusService
from joch.controllers.service import Service
from joch.controllers.teams import TeamService

__all__ = ["SERVICES", "ServiceFactory"]

ServiceFactory = type[Service]

SERVICES: tuple[ServiceFactory, ...] = (
    CompileService,
    ReferencedStatusService,
    AgBOMService,
    ExecutionService,
    ApprovalService,
    TeamService,
    BudgetService,
    EvalService,
)
