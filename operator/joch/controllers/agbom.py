"""The AgBOM service: for every Agent a CycloneDX bill of materials, versioned, regenerated exactly when
what it says changes (one more service on the shared cache; see joch.controllers.service).

Work key: ``ObjectKey("AgBOM", namespace, agent)``. Watches the kinds an Agent's compile reads, the
Namespaces, the KnowledgeSources its RAGs name and the AgBOM objects; a change queues the AgBOMs of the
Agents it affects, found through the service's own reverse index (the dependencies of its last
describe of each Agent, updated in the same step as the describe, so a change that lands between two
services' passes is never missed) and the label rules of joch.domain.reconcile.fanout.

For one key: gather and compile the Agent from the cache (as the compile service does), describe its
AgBOM (joch.domain.agbom: cheap plain data and a content hash); only when that hash differs from the
newest stored generation's is the CycloneDX document rendered and written as ConfigMap
``<agent>-agbom-v<n+1>``; generations beyond the newest five are deleted; then the AgBOM status
(generation, artifacts, high-risk components, conditions) and the Agent's ``status.agbom`` are patched
when they differ. A change that does not alter the content writes nothing.

The AgBOM object is created when absent (owned by the Agent); a user-written one of the Agent's name
supplies the component switches (``spec.components``) and ``refresh.onChange``. The documents are owned
by the AgBOM object: deleting the Agent removes everything through the garbage collector.

``spec.refresh.schedule`` (five cron fields, UTC) queues the AgBOM again when it next fires; a
reconcile at or after that time regenerates even with ``refresh.onChange: false`` (still only when the
content differs). Known limits: ``spec.formats`` other than cyclonedx are not generated (the Ready
condition says so); a document ConfigMap deleted by hand is not rewritten until the content changes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import logging
from collections.abc import Hashable, Iterable, Mapping
from typing import Any, Final

import pydantic

import joch
from joch.api.v1alpha1.agbom import AgBOM
from joch.api.v1alpha1.agent import Agent
from joch.controllers.service import Change, Host, Service
from joch.domain import agbom, compilation
from joch.domain import audit as governance
from joch.domain.agbom import schedule as agbom_schedule
from joch.domain.compilation.canonical import sha256_hex
from joch.domain.compilation.keys import ObjectKey
from joch.domain.reconcile import agbom as plan
from joch.domain.reconcile import fanout
from joch.domain.reconcile.cache import RUNTIME_KIND_NAMES, WATCHED_KINDS, Entry, parse_entry
from joch.kube import agboms, events, paths

__all__ = ["AgBOMService", "agbom_key"]

logger = logging.getLogger("joch.agbom")

AGENTS: Final = paths.ResourceType.of(Agent)


def agbom_key(namespace: str, agent: str) -> ObjectKey:
    return ObjectKey("AgBOM", namespace, agent)


@dataclasses.dataclass(slots=True)
class _Described:
    """One describe of one Agent: the content and what the AgBOM object asks for."""

    agent: Entry
    content: agbom.Content
    notes: list[str]
    on_change: bool
    spec_generation: int | None
    schedule: agbom_schedule.Schedule | None


class AgBOMService(Service):
    name = "agbom"
    watches = frozenset({*WATCHED_KINDS, "Namespace"} - RUNTIME_KIND_NAMES)
    resync_kinds = ("Agent",)

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self.index = fanout.ReverseIndex()
        """Agent -> what its last describe consulted (compile inputs and KnowledgeSources)."""
        self.documents: dict[tuple[str, str], dict[int, plan.Document]] = collections.defaultdict(dict)
        """(namespace, agent) -> generation -> the stored document ConfigMap."""
        self.due: dict[ObjectKey, datetime.datetime] = {}
        """AgBOM key -> when its refresh.schedule next fires (a reconcile at or after it regenerates
        even with refresh.onChange false)."""

    # --- what is dirty ----------------------------------------------------------------------------

    def owns(self, key: Hashable) -> bool:
        return isinstance(key, ObjectKey) and key.kind == "AgBOM"

    def observe(self, change: Change) -> None:
        host = self.host
        if change.kind == "Namespace":
            agents: Iterable[ObjectKey] = fanout.namespace_affected(change.name, self.index)
        elif change.kind == "AgBOM":
            if not change.changed:
                return
            if change.new is None:  # its documents go with it (garbage collection): start afresh
                self.documents.pop((change.namespace or "", change.name), None)
            agents = (fanout.agent_key(change.namespace or "", change.name),)
        elif not change.changed or change.current is None:
            return
        elif change.kind == "Agent":
            agents = (change.current.key,)
        elif change.kind == "KnowledgeSource":
            agents = self.index.dependants(change.current.key)
        else:
            agents = fanout.affected_agents(
                change.old, change.new, store=host.store, index=self.index, settings=host.settings
            )
        for agent in agents:
            if host.manages(agent.namespace):
                host.queue.add(agbom_key(agent.namespace or "", agent.name))

    async def prime(self) -> None:
        """Remember every stored document ConfigMap (one LIST per watched namespace)."""
        for namespace in self.host.watch_namespaces() or (None,):
            for document in await agboms.list_documents(self.host.kube, namespace=namespace):
                self.documents[(document.namespace, document.agent)][document.generation] = document

    def start_keys(self) -> Iterable[Hashable]:
        store = self.host.store
        for namespace in store.namespaces_with_agents():
            for name in store.agent_names(namespace):
                yield agbom_key(namespace, name)
        for entry in store.entries("AgBOM"):
            yield agbom_key(entry.namespace or "", entry.name)

    # --- reconcile --------------------------------------------------------------------------------

    async def reconcile(self, key: Hashable) -> None:
        assert isinstance(key, ObjectKey)
        host = self.host
        namespace, name = key.namespace or "", key.name
        described = self._describe(namespace, name)
        if described is None:
            await self._without_agent(key)
            return
        agent_entry, content = described.agent, described.content
        bom_entry = host.store.entry("AgBOM", namespace, name)
        if bom_entry is None:
            agent = agent_entry.load()
            assert isinstance(agent, Agent)
            body = await agboms.create_agbom(host.kube, plan.desired_agbom(agent, agent_entry.uid))
            bom_entry = parse_entry(AgBOM, body)
            host.store.upsert(bom_entry)
            host.counts["agboms_created"] += 1
        if _names_other(bom_entry):
            await self._pending(bom_entry, "AgentRefMismatch", _mismatch(bom_entry))
            return

        stored = bom_entry.status
        known = self.documents[(namespace, name)]
        newest = known.get(max(known)) if known else None
        document = known.get(stored.get("generation") or 0)
        generated_at = stored.get("lastGeneratedAt") or ""
        if newest is not None and newest.content_hash == content.content_hash:
            document = newest  # current (or written before a crash, its status never followed)
            generated_at = generated_at if stored.get("generation") == newest.generation else host.now()
        elif newest is not None and not described.on_change and not self._scheduled_now(key):
            document = newest  # refresh.onChange false: the newest generation stays until the schedule
            described.notes.append("refresh.onChange is false: regenerated on schedule only")
        else:
            generation = max(int(stored.get("generation") or 0), newest.generation if newest else 0) + 1
            generated_at = host.now()
            text = agbom.render(content, generation=generation, timestamp=generated_at)
            desired = plan.desired_configmap(
                namespace=namespace,
                agent=name,
                agbom_uid=bom_entry.uid,
                generation=generation,
                text=text,
                sha256=sha256_hex(text),
                content_hash=content.content_hash,
            )
            document = await agboms.write_document(host.kube, desired)
            known[generation] = document
            host.counts["agbom_documents_written"] += 1
            host.recorder.record(
                _involved(bom_entry),
                "Normal",
                "Generated",
                f"generation {generation} in ConfigMap {document.name} (sha256 {document.sha256[:12]})",
            )
        assert document is not None
        for generation in plan.doomed(known):
            if await agboms.delete_document(host.kube, namespace, known[generation].name):
                host.counts["agbom_documents_deleted"] += 1
            del known[generation]

        risky = plan.new_risks(stored, content.high_risk)
        # The two statuses are independent (each under its own object's lock): written side by side.
        await asyncio.gather(
            self._write_agbom_status(bom_entry, document, generated_at, described),
            self._write_agent_status(agent_entry, document),
        )
        if risky:
            message = "; ".join(f"{item.kind} {item.name}: {item.reason}" for item in risky)
            host.recorder.record(_involved(bom_entry), "Warning", "HighRiskComponent", message)
            for item in risky:
                host.governance.record(
                    "agbom_finding",
                    actor=governance.OPERATOR,
                    resource=governance.Resource.of(bom_entry),
                    decision="finding",
                    reason=f"{item.kind} {item.name}: {item.reason}",
                    severity="High",
                    details={"component": item.wire(), "generation": document.generation},
                    time=host.clock(),
                )
        self._schedule_next(key, described.schedule)

    def _now(self) -> datetime.datetime:
        return datetime.datetime.strptime(self.host.now(), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)

    def _scheduled_now(self, key: ObjectKey) -> bool:
        due = self.due.get(key)
        return due is not None and self._now() >= due

    def _schedule_next(self, key: ObjectKey, schedule: agbom_schedule.Schedule | None) -> None:
        """Queue the key again when its refresh.schedule next fires (no schedule: forget it)."""
        if schedule is None:
            self.due.pop(key, None)
            return
        now = self._now()
        due = self.due.get(key)
        if due is not None and due > now:
            return  # already queued for then
        following = schedule.next_after(now)
        if following is None:
            self.due.pop(key, None)
            return
        self.due[key] = following
        self.host.queue.add_after(key, (following - now).total_seconds())

    def _describe(self, namespace: str, name: str) -> _Described | None:
        """Gather, compile and describe the Agent from the cache (no await: one consistent snapshot),
        and record what it consulted; None when there is no Agent to describe."""
        host = self.host
        agent_key = fanout.agent_key(namespace, name)
        entry = host.store.entry("Agent", namespace, name)
        if entry is None:
            self.index.remove(agent_key)
            return None
        try:
            agent = entry.load()
        except pydantic.ValidationError:
            return None  # the compile service reports it (InvalidSpec)
        assert isinstance(agent, Agent)
        if agent.spec.observability.agbom == "disabled":
            self.index.remove(agent_key)
            return None
        bom_entry = host.store.entry("AgBOM", namespace, name)
        bom = bom_entry.obj if bom_entry is not None else None
        spec = bom.spec if isinstance(bom, AgBOM) else None
        gathered = compilation.gather(agent, host.store, host.settings)
        compiled = compilation.compile_agent(gathered, host.settings, programs=host.programs)
        content = agbom.describe(
            gathered,
            compiled,
            agent_uid=entry.uid,
            options=agbom.Options.from_spec(spec),
            lookup=host.store,
            tool_version=joch.__version__,
        )
        self.index.update(agent_key, gathered.dependencies | content.dependencies)
        notes = []
        if spec is not None and (others := [f for f in spec.formats if f != "cyclonedx"]):
            notes.append(f"formats {', '.join(others)} are not generated (only cyclonedx)")
        schedule = None
        if spec is not None and spec.refresh.schedule:
            try:
                schedule = agbom_schedule.parse(spec.refresh.schedule)
            except agbom_schedule.ScheduleError as exc:
                notes.append(f"spec.refresh.schedule: {exc}; ignored")
        on_change = spec is None or spec.refresh.on_change
        generation = bom_entry.generation if bom_entry is not None else None
        return _Described(entry, content, notes, on_change, generation, schedule)

    async def _write_agbom_status(
        self, bom_entry: Entry, document: plan.Document, generated_at: str, described: _Described
    ) -> None:
        host = self.host
        content = described.content

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            return plan.agbom_status(
                document=document,
                generated_at=generated_at,
                high_risk=content.high_risk,
                complete=content.complete,
                missing=content.missing,
                observed_generation=stored.generation,
                notes=described.notes,
                current=stored.status,
                now=host.now(),
            )

        async with host.status_lock(bom_entry.key):
            await host.write_status(bom_entry.key, bom_entry.uid, desire, owned=plan.AGBOM_FIELDS)

    async def _write_agent_status(self, agent_entry: Entry, document: plan.Document) -> None:
        host = self.host
        wanted = {"name": agent_entry.name, "generation": document.generation, "sha256": document.sha256}

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            return {"agbom": wanted}

        async with host.status_lock(agent_entry.key):
            await host.write_status(agent_entry.key, agent_entry.uid, desire, owned=())

    async def _without_agent(self, key: ObjectKey) -> None:
        """No Agent to describe: forget its documents (the garbage collector removes them with the
        AgBOM object the Agent owned); a user-written AgBOM says its Agent is missing."""
        namespace = key.namespace or ""
        agent = self.host.store.entry("Agent", namespace, key.name)
        if agent is None:
            self.documents.pop((namespace, key.name), None)
        bom_entry = self.host.store.entry("AgBOM", namespace, key.name)
        if bom_entry is None or agent is not None:
            return  # an Agent that does not parse or has agbom disabled: nothing to say here
        if _names_other(bom_entry):
            await self._pending(bom_entry, "AgentRefMismatch", _mismatch(bom_entry))
        else:
            await self._pending(bom_entry, "AgentNotFound", f"Agent {namespace}/{key.name} not found")

    async def _pending(self, bom_entry: Entry, reason: str, message: str) -> None:
        host = self.host

        def desire(stored: Entry) -> Mapping[str, Any] | None:
            return plan.pending_status(
                reason, message, observed_generation=stored.generation, current=stored.status, now=host.now()
            )

        async with host.status_lock(bom_entry.key):
            await host.write_status(bom_entry.key, bom_entry.uid, desire, owned=())

    # --- resync -----------------------------------------------------------------------------------

    def drifted(self, entry: Entry) -> Hashable | None:
        """The AgBOM key of an Agent whose stored AgBOM, document or Agent status.agbom is not what a
        describe now implies."""
        key = agbom_key(entry.namespace or "", entry.name)
        described = self._describe(entry.namespace or "", entry.name)
        if described is None:
            return None
        bom_entry = self.host.store.entry("AgBOM", entry.namespace, entry.name)
        if bom_entry is None:
            return key
        stored = bom_entry.status
        known = self.documents.get((entry.namespace or "", entry.name)) or {}
        document = known.get(stored.get("generation") or 0)
        if document is None or (
            described.on_change and document.content_hash != described.content.content_hash
        ):
            return key
        if stored.get("highRiskCount") != len(described.content.high_risk) or len(known) > plan.KEEP:
            return key
        wanted = {"name": entry.name, "generation": document.generation, "sha256": document.sha256}
        return key if entry.status.get("agbom") != wanted else None


def _names_other(bom_entry: Entry) -> bool:
    """Whether a (user-written) AgBOM names an Agent other than the one of its own name."""
    obj = bom_entry.obj
    return isinstance(obj, AgBOM) and obj.spec.agent_ref.name != bom_entry.name


def _mismatch(bom_entry: Entry) -> str:
    obj = bom_entry.obj
    named = obj.spec.agent_ref.name if isinstance(obj, AgBOM) else "?"
    return (
        f"spec.agentRef.name: {named!r} is not this AgBOM's own name {bom_entry.name!r} (an AgBOM is "
        "named after the Agent it describes)"
    )


def _involved(entry: Entry) -> events.InvolvedObject:
    return events.InvolvedObject(agboms.AGBOMS.api_version, "AgBOM", entry.namespace, entry.name, entry.uid)
