"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm): one replica reconciles.

Every replica serves the admission webhooks; only the holder of the Lease runs the controllers' workers::

    elector = leader.LeaderElector(kube, leader.LeaseConfig(name="joch-leader", namespace="joch-system",
                                                            identity=leader.default_identity()))
    task = asyncio.create_task(elector.run(on_started=controller.start, on_stopped=on_lost))
    ...
    await elector.release()        # on shutdown: the next replica takes over at once, not after expiry

Acquiring: a replica takes the Lease when it does not exist (create), when it names no holder (released),
or when its record has not changed for ``lease_duration`` as measured on this replica's own monotonic clock
since it last saw the record change (so clock skew between nodes does not matter). Writes are optimistic
(``resourceVersion``): of two replicas racing for an expired Lease, one gets 409 Conflict and stays a
follower. The leader renews every ``retry_period``; if it cannot renew for ``renew_deadline`` it stops
leading (``on_stopped``) before any follower may take over (``renew_deadline < lease_duration``), so two
replicas never reconcile at once as long as clocks run at the same rate.

Use a :class:`~joch.kube.client.Kube` of its own (few retries, a short timeout), not the controllers' one:
renewals must not queue behind a fan-out's writes in the shared token bucket. ``on_stopped`` should end
the process (client-go does the same): a replica that lost the Lease restarts as a follower with clean
state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final

from joch import metrics
from joch.kube import client, errors

__all__ = ["LEASES_GROUP", "LeaderElector", "LeaseConfig", "default_identity", "lease_path"]

logger = logging.getLogger("joch.leader")

LEASES_GROUP: Final = "coordination.k8s.io"
_API: Final = f"/apis/{LEASES_GROUP}/v1"


def lease_path(namespace: str, name: str | None = None) -> str:
    base = f"{_API}/namespaces/{namespace}/leases"
    return f"{base}/{name}" if name else base


def default_identity() -> str:
    """This replica's identity: $POD_NAME (the Pod) or the host name, plus a random suffix so that a
    restarted process never mistakes the previous process's Lease for its own."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def _micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Which Lease, who we are, and the timings (seconds; client-go's defaults are 15/10/2)."""

    name: str
    namespace: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry_period < renew_deadline < lease_duration, not "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class _Observed:
    holder: str
    resource_version: str
    duration: float
    """The record's leaseDurationSeconds (the holder's promise)."""
    at: float
    """Monotonic time when this replica saw this record (holder + resourceVersion) first."""


class LeaderElector:
    """Acquire, renew and release one Lease (see the module docstring)."""

    def __init__(
        self,
        kube: client.Kube,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime.datetime] = _utcnow,
    ) -> None:
        self.kube = kube
        self.config = config
        self._monotonic = monotonic
        self._now = now
        self._observed: _Observed | None = None
        self._last_renew: float | None = None
        self.leading = asyncio.Event()
        """Set while this replica holds the Lease."""
        self._stopped = False

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def released(self) -> bool:
        """Whether :meth:`release` was called (the elector does not compete any more)."""
        return self._stopped

    @property
    def holder(self) -> str | None:
        """The holder this replica last observed ('' when released, None before the first look)."""
        return self._observed.holder if self._observed else None

    # --- one attempt --------------------------------------------------------------------------------

    def _spec(self, current: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time(self._now())
        spec = dict((current or {}).get("spec") or {})
        mine = spec.get("holderIdentity") == self.config.identity
        if not mine:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if current else 0)
        spec["holderIdentity"] = self.config.identity
        spec["leaseDurationSeconds"] = max(1, round(self.config.lease_duration))
        spec["renewTime"] = now
        return spec

    def _observe(self, body: dict[str, Any]) -> _Observed:
        spec = body.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        version = (body.get("metadata") or {}).get("resourceVersion") or ""
        previous = self._observed
        if previous is None or (previous.holder, previous.resource_version) != (holder, version):
            self._observed = _Observed(holder, version, duration, self._monotonic())
        assert self._observed is not None
        return self._observed

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        config = self.config
        try:
            current = await self.kube.request("GET", lease_path(config.namespace, config.name))
        except errors.NotFound:
            body = {
                "apiVersion": f"{LEASES_GROUP}/v1",
                "kind": "Lease",
                "metadata": {"name": config.name, "namespace": config.namespace},
                "spec": self._spec(None),
            }
            try:
                created = await self.kube.request("POST", lease_path(config.namespace), body=body)
            except errors.AlreadyExists:
                return False
            self._observe(created)
            return True
        observed = self._observe(current)
        held_by_other = observed.holder not in ("", config.identity)
        if held_by_other and self._monotonic() - observed.at < observed.duration:
            return False
        updated = dict(current)
        updated["spec"] = self._spec(current)
        try:
            result = await self.kube.request("PUT", lease_path(config.namespace, config.name), body=updated)
        except errors.Conflict:
            return False
        self._observe(result)
        return True

    # --- the loop -----------------------------------------------------------------------------------

    async def _attempt(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(max(timeout, 0.001)):
                return await self.try_acquire_or_renew()
        except (errors.KubeError, TimeoutError) as exc:
            logger.info("lease %s/%s: %s", self.config.namespace, self.config.name, exc)
            return False

    async def acquire(self) -> bool:
        """Return True once this replica holds the Lease (False when released meanwhile)."""
        while not self._stopped:
            if await self._attempt(self.config.retry_period):
                self._last_renew = self._monotonic()
                self.leading.set()
                metrics.set_leader(True)
                logger.info(
                    "became the leader as %s (lease %s/%s)",
                    self.config.identity,
                    self.config.namespace,
                    self.config.name,
                )
                return True
            await asyncio.sleep(self.config.retry_period)
        return False

    async def renew(self) -> None:
        """Renew every retry_period; return when the Lease could not be renewed for renew_deadline."""
        while self.leading.is_set() and not self._stopped:
            await asyncio.sleep(self.config.retry_period)
            last = self._last_renew or self._monotonic()
            remaining = self.config.renew_deadline - (self._monotonic() - last)
            if remaining <= 0:
                break
            if await self._attempt(remaining):
                self._last_renew = self._monotonic()
            elif self._monotonic() - last >= self.config.renew_deadline:
                break
        if self.leading.is_set():
            self.leading.clear()
            metrics.set_leader(False)
            logger.warning("lost the lease %s/%s", self.config.namespace, self.config.name)

    async def run(
        self,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
    ) -> None:
        """Acquire, call ``on_started``, renew until the Lease is lost, call ``on_stopped``; then start
        over (unless ``on_stopped`` ends the process, as advised)."""
        metrics.set_leader(False)
        while not self._stopped:
            if not await self.acquire():
                return
            await on_started()
            await self.renew()
            if self.released:
                return
            await on_stopped()

    async def release(self) -> None:
        """Give the Lease up (if held) so that a follower takes over without waiting for expiry."""
        self._stopped = True
        if not self.leading.is_set():
            return
        self.leading.clear()
        metrics.set_leader(False)
        config = self.config
        try:
            current = await self.kube.request("GET", lease_path(config.namespace, config.name))
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != config.identity:
                return
            spec["holderIdentity"] = None
            spec["leaseDurationSeconds"] = 1
            spec["renewTime"] = _micro_time(self._now())
            await self.kube.request(
                "PUT", lease_path(config.namespace, config.name), body={**current, "spec": spec}
            )
            logger.info("released the lease %s/%s", config.namespace, config.name)
        except errors.KubeError as exc:
            logger.warning("could not release the lease %s/%s: %s", config.namespace, config.name, exc)
