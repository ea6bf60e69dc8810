"""What the admission webhooks ask the API server about Approvals, and the Approvals they request.

- :func:`learn_identity`: the operator's own user name (a SelfSubjectReview), so admission trusts its
  bookkeeping writes on Approvals (Pending, expiresAt, expiry) and nobody else's.
- :func:`authorizer`: whether a user holds the ``override`` / ``acknowledge`` verb on an Approval (a
  LocalSubjectAccessReview per verb), asked only for the writes that need it.
- :func:`promotion_requester`: after a Deployment is denied because its ``requiresApproval`` gate has no
  Approval, the Pending Approval approvers will find in ``joch approvals ls`` (never on a dry run; one
  per promoted state, so applying again finds the same request); and when its ``requiresEval`` gate has
  no passing run for the Agent's current generation, the eval run of that generation (one per
  generation: applying again finds the same run).
"""

from __future__ import annotations

import logging
from typing import Final

from joch.api.v1alpha1.agent import Agent
from joch.api.v1alpha1.deployment import Deployment
from joch.api.v1alpha1.eval import Eval
from joch.domain.admission import Admission, Request, UserInfo, World, promotion
from joch.domain.reconcile import evals
from joch.kube import access, client, errors, jobs
from joch.webhooks.handler import Authorizer, DenialHook

__all__ = ["authorizer", "learn_identity", "promotion_requester"]

logger = logging.getLogger("joch.webhooks")
JUDGED: Final = frozenset({"CREATE", "UPDATE"})


async def learn_identity(kube: client.Kube, admission: Admission) -> str:
    """Ask the API server who the operator is and tell admission; '' when it cannot say."""
    try:
        user = await access.whoami(kube)
    except errors.KubeError as exc:
        logger.warning(
            "cannot learn the operator's user name (SelfSubjectReview: %s); Approval expiries "
            "will be refused until it restarts",
            exc,
        )
        return ""
    if user:
        admission.operator_users = frozenset({user})
        logger.info("operator identity: %s", user)
    return user


def authorizer(kube: client.Kube) -> Authorizer:
    async def ask(
        user: UserInfo,
        namespace: str,
        name: str,
        verbs: tuple[str, ...],
        *,
        group: str = access.APPROVALS.group,
        resource: str = access.APPROVALS.plural,
    ) -> frozenset[str]:
        return await access.allowed_verbs(
            kube,
            username=user.username,
            groups=user.groups,
            extra=user.extra,
            namespace=namespace,
            name=name,
            verbs=verbs,
            group=group,
            resource=resource,
        )

    return ask


def promotion_requester(kube: client.Kube) -> DenialHook:
    async def request(denied: Request, world: World) -> str | None:
        if denied.kind != "Deployment" or denied.operation not in JUDGED or denied.sub_resource:
            return None
        deployment, old = promotion.written(
            denied.object, denied.old_object, denied.namespace, denied.operation
        )
        if deployment is None:
            return None
        if not promotion.gates_due(deployment, old):
            return None
        notes = [
            note
            for note in (
                await _request_eval_run(kube, deployment, world),
                await _request_approval(kube, deployment, world, denied.user.username),
            )
            if note
        ]
        return "; ".join(notes) or None

    return request


async def _request_approval(kube: client.Kube, deployment: Deployment, world: World, user: str) -> str | None:
    body = promotion.requested_approval(deployment, world, user)
    if body is None:
        return None
    metadata = body["metadata"]
    try:
        _, created = await access.create_approval(kube, body)
    except errors.KubeError as exc:
        logger.warning(
            "cannot create the promotion Approval %s/%s: %s", metadata["namespace"], metadata["name"], exc
        )
        return None
    approvers = ", ".join(body["spec"]["routing"]["approvers"])
    verb = "created" if created else "found"
    return (
        f"{verb} Approval {metadata['namespace']}/{metadata['name']} (Pending, for {approvers}): once it "
        f"is approved (joch approvals decide {metadata['name']} -n {metadata['namespace']} --decision "
        "approve), apply the Deployment again"
    )


async def _request_eval_run(kube: client.Kube, deployment: Deployment, world: World) -> str | None:
    """Start the run the Agent's current generation needs, when ``requiresEval`` names an Eval of the
    Deployment's Agent that has no passing run for it."""
    promotion_spec = deployment.spec.promotion
    name = promotion_spec.requires_eval if promotion_spec is not None else None
    namespace = deployment.metadata.namespace or ""
    if not name:
        return None
    evaluation = world.get(Eval, namespace, name)
    ref = deployment.spec.agent_ref
    agent = world.get(Agent, namespace, ref.name)
    if evaluation is None or agent is None or evaluation.spec.target.name != ref.name:
        return None
    generation = agent.metadata.generation
    records = (
        [r.model_dump(mode="json", by_alias=True) for r in (evaluation.status.runs or ())]
        if (evaluation.status is not None)
        else []
    )
    newest = evals.newest_for_generation(records, generation)
    if newest is not None and newest.get("phase") == "Passed":
        return None
    run = evals.run_name(name, f"g{generation}")
    body = evals.run_execution(
        evaluation, name=run, trigger="promotion", uid=evaluation.metadata.uid, generation=generation
    )
    try:
        created = await jobs.create_execution(kube, body)
    except errors.KubeError as exc:
        logger.warning("cannot start the eval run %s/%s: %s", namespace, run, exc)
        return None
    verb = "started" if created else "found"
    return (
        f"{verb} eval run Execution {namespace}/{run} for Agent {ref.name} generation {generation} "
        f"(kubectl get eval {name} -n {namespace} -w); once it has passed, apply the Deployment again"
    )
