"""joch.decision_service: the policy decision service, and the preview of a policy change.

- service: :class:`~service.DecisionService`, compiled Policies and Environment facts kept current from
  watch events, and ``decide(request, now=)``;
- deciding: :class:`~deciding.Decider`, one decision as every face makes it (readiness, the decision,
  the budget step, the metric);
- requests: the JSON request of ``POST /v1/policy/evaluate`` and the decision-context shape check;
- endpoint: the aiohttp application (``build_app``), errors in the shape of docs/catalog.md section 6;
- callers: who may ask (``decision_callers``): bearer tokens checked by TokenReview, verdicts cached;
- serving: :func:`~serving.register` (kopf handlers + the server's start and stop, for ``joch
  operator``) and :func:`~serving.run_standalone` (``joch policy serve``);
- preview: which Agents a Policy change would newly deny (pure), over a
  :class:`~preview.Snapshot` that cluster.read_snapshot reads through joch.kube.

Layer: beside joch.controllers and joch.webhooks (it imports joch.kube, joch.domain, joch.api, kopf
and aiohttp, never the controllers or the webhooks).
"""

from joch.decision_service import callers, cluster, deciding, endpoint, preview, requests, service, serving
from joch.decision_service.endpoint import EVALUATE_PATH, build_app
from joch.decision_service.service import DecisionService
from joch.decision_service.serving import register, run_standalone

__all__ = [
    "EVALUATE_PATH",
    "DecisionService",
    "build_app",
    "callers",
    "cluster",
    "deciding",
    "endpoint",
    "preview",
    "register",
    "requests",
    "run_standalone",
    "service",
    "serving",
]
