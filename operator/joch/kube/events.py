"""Kubernetes Events (core/v1) about joch objects: ``kubectl describe`` and ``kubectl get events`` show them.

Events are best effort: :func:`emit_event` raises on failure like every joch.kube call, and callers
(the controllers' event recorder) log and drop. Events about cluster-scoped objects go to the
``default`` namespace, as kubectl and client-go do.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any, Final, Literal

from joch.kube import client, paths

__all__ = ["COMPONENT", "InvolvedObject", "emit_event"]

COMPONENT: Final = "joch-operator"
MAX_MESSAGE: Final = 1024
EventType = Literal["Normal", "Warning"]


@dataclasses.dataclass(frozen=True, slots=True)
class InvolvedObject:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str | None
    name: str
    uid: str | None = None

    def wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out


def event_body(
    involved: InvolvedObject, type_: EventType, reason: str, message: str, *, now: datetime.datetime
) -> dict[str, Any]:
    """The Event object to create (pure)."""
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{involved.name[:200]}.", "namespace": involved.namespace or "default"},
        "involvedObject": involved.wire(),
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


async def emit_event(
    kube: client.Kube,
    involved: InvolvedObject,
    type_: EventType,
    reason: str,
    message: str,
    *,
    now: datetime.datetime,
) -> None:
    """Create one Event about ``involved``."""
    body = event_body(involved, type_, reason, message, now=now)
    await kube.request("POST", paths.EVENTS.collection_path(body["metadata"]["namespace"]), body=body)
