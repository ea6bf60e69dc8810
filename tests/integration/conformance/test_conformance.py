"""The same catalog, admission-free operator and API behaviour on every store (etcd, sqlite, postgres).

Cases, each on each store: every CRD establishes and serves; examples/ and a second fleet apply and
compile (each manifest byte-identical to ``joch compile`` of the objects read back); a Model change
rewrites exactly its dependants; a watch from a compacted resourceVersion (410 Gone) is resumed by a
re-list that reports the deletion it missed; the cluster's controllers work on it (a Job runs to
completion on a fake Node, the garbage collector deletes what the Job owned).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from joch.kube import client, paths
from joch.kube.watch import Listed, MetadataWatch
from tests.helpers import fake_job, gone
from tests.integration.conformance.conftest import COMPACTION_SECONDS
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    Example,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    compile_from_cluster,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]


@pytest.fixture
def second_namespace(kube_api: k8s.ApiClient) -> Iterator[str]:
    name = f"t-second-fleet-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(kube_api)
    core.create_namespace(
        k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name, labels={"joch.dev/test": "true"}))
    )
    try:
        yield name
    finally:
        core.delete_namespace(name)


def test_crds_establish_and_serve(store: str, crds_installed: list[str], kube_api: k8s.ApiClient) -> None:
    ext = k8s.ApiextensionsV1Api(kube_api)
    custom = k8s.CustomObjectsApi(kube_api)
    assert len(crds_installed) >= 20, crds_installed

    def check(name: str) -> None:
        crd = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
        conditions = {c["type"]: c["status"] for c in crd["status"].get("conditions") or ()}
        assert conditions.get("Established") == "True", (store, name, conditions)
        assert conditions.get("NamesAccepted") == "True", (store, name, conditions)
        spec = crd["spec"]
        version = next(v["name"] for v in spec["versions"] if v["storage"])
        listed = custom.list_cluster_custom_object(spec["group"], version, spec["names"]["plural"])
        assert listed["metadata"]["resourceVersion"], (store, name)

    # The first request for a just-established resource takes about a second: ask for all at once.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(check, crds_installed))


def test_examples_and_a_second_fleet_apply_and_compile(
    store: str,
    namespace: str,
    second_namespace: str,
    kubectl: Kubectl,
    cluster: Cluster,
    start_operator: StartOperator,
) -> None:
    fleets = [support_triage(namespace), support_triage(second_namespace)]
    start_operator(namespace, second_namespace)
    for fleet in fleets:
        apply(kubectl, fleet.docs)
    for fleet in fleets:
        agents = [d["metadata"]["name"] for d in fleet.docs if d["kind"] == "Agent"]
        assert agents
        for name in agents:
            eventually(lambda n=name, f=fleet: ready(cluster, f.namespace, n), timeout=120)
        compiled = compile_from_cluster(kubectl, fleet.namespace, fleet)
        manifests = cluster.manifests(fleet.namespace)
        for name in agents:
            agent = cluster.agent(fleet.namespace, name)
            cm_name = f"{name}-g{agent['metadata']['generation']}"
            assert agent["status"]["compiledManifest"]["name"] == cm_name
            assert manifests[cm_name].data["manifest.yaml"] == compiled[cm_name], (store, cm_name)
    # The two fleets compile to the same manifests up to their namespace and suffix.
    first, second = (compile_from_cluster(kubectl, f.namespace, f) for f in fleets)
    assert set(first) == set(second)
    for name, text in first.items():
        normalised = text.replace(fleets[0].namespace, "<ns>").replace(fleets[0].suffix, "<sfx>")
        other = second[name].replace(fleets[1].namespace, "<ns>").replace(fleets[1].suffix, "<sfx>")
        assert _without_hashes(normalised) == _without_hashes(other), name


def _without_hashes(text: str) -> str:
    return re.sub(r"sourceHash: [0-9a-f]{64}", "sourceHash: <hash>", text)


def test_a_model_change_fans_out_to_exactly_its_dependants(
    store: str, namespace: str, kubectl: Kubectl, cluster: Cluster, start_operator: StartOperator
) -> None:
    example = support_triage(namespace)
    ns = example.namespace
    route = {
        "apiVersion": "model.joch.dev/v1alpha1",
        "kind": "ModelRoute",
        "metadata": {"name": "claude-only", "namespace": ns},
        "spec": {"strategy": {"primary": "anthropic:claude-sonnet"}},
    }
    dependants = [agent_doc(example, f"uses-gpt-{i}") for i in range(3)]
    others = [
        agent_doc(
            example,
            f"other-{i}",
            modelRoute={"routeRef": {"name": "claude-only"}},
            tools=[{"name": "zendesk.search"}],
            mcpServers=None,
            memories=None,
        )
        for i in range(2)
    ]
    barrier = agent_doc(example, "barrier", modelRoute={"routeRef": {"name": "claude-only"}}, tools=None)
    barrier["spec"].pop("mcpServers", None)
    start_operator(ns)
    apply(kubectl, [*example.docs, route, *dependants, *others, barrier])
    users = ["support-triage", *(d["metadata"]["name"] for d in dependants)]
    non_users = [d["metadata"]["name"] for d in others]
    for name in [*users, *non_users, "barrier"]:
        eventually(lambda n=name: ready(cluster, ns, n), timeout=120)
    before = {name: cluster.agent(ns, name) for name in [*users, *non_users]}
    cms_before = cluster.manifests(ns)

    changed = time.monotonic()
    cluster.patch("Model", ns, "gpt-5-thinking", {"spec": {"pricing": {"inputPerMillionTokens": 2.5}}})

    def all_rewritten() -> None:
        for name in users:
            sha = cluster.status("Agent", ns, name)["compiledManifest"]["sha256"]
            assert sha != before[name]["status"]["compiledManifest"]["sha256"], f"{name} not rewritten yet"

    eventually(all_rewritten, timeout=60)
    fan_out = time.monotonic() - changed
    cluster.patch("Agent", ns, "barrier", {"spec": {"description": "barrier"}})
    eventually(lambda: ready(cluster, ns, "barrier", generation=2), timeout=60)

    cms_after = cluster.manifests(ns)
    for name in users:
        cm = cms_after[f"{name}-g1"]
        sha = cluster.status("Agent", ns, name)["compiledManifest"]["sha256"]
        assert cm.metadata.annotations["joch.dev/manifest-sha256"] == sha
    for name in non_users:
        agent = cluster.agent(ns, name)
        assert agent["metadata"]["resourceVersion"] == before[name]["metadata"]["resourceVersion"], name
        assert (
            cms_after[f"{name}-g1"].metadata.resource_version
            == cms_before[f"{name}-g1"].metadata.resource_version
        ), f"{name}'s manifest was rewritten"
    print(f"{store}: fan-out to {len(users)} dependants in {fan_out:.2f}s")


def _configmap(name: str) -> k8s.V1ConfigMap:
    return k8s.V1ConfigMap(
        metadata=k8s.V1ObjectMeta(name=name, labels={"joch.dev/test-watch": "yes"}), data={"v": name}
    )


def test_an_expired_watch_is_resumed_by_a_relist_without_missing_a_deletion(
    store: str, namespace: str, kubeconfig: str, kube_api: k8s.ApiClient
) -> None:
    core = k8s.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, _configmap("doomed"))
    core.create_namespaced_config_map(namespace, _configmap("kept"))
    listed = core.list_namespaced_config_map(namespace, label_selector="joch.dev/test-watch=yes")
    old_version = listed.metadata.resource_version
    known = {(namespace, cm.metadata.name): cm.metadata.resource_version for cm in listed.items}
    assert set(known) == {(namespace, "doomed"), (namespace, "kept")}

    core.delete_namespaced_config_map("doomed", namespace)
    core.create_namespaced_config_map(namespace, _configmap("later"))

    def compacted() -> None:
        # Writes move the revision on; the API server compacts to what it saw one interval ago.
        core.patch_namespaced_config_map("kept", namespace, {"data": {"tick": str(time.monotonic())}})
        try:
            core.list_namespaced_config_map(
                namespace, resource_version=old_version, resource_version_match="Exact"
            )
        except ApiException as exc:
            if exc.status != 410:
                raise
            return
        raise AssertionError(f"resourceVersion {old_version} is not compacted yet")

    eventually(compacted, timeout=8 * COMPACTION_SECONDS, interval=1.0)

    kube = client.Kube(client.new_api_client(client.load_configuration(kubeconfig)))

    async def scenario() -> tuple[list[tuple[str, str]], int]:
        events: asyncio.Queue[tuple[str, Mapping[str, Any]]] = asyncio.Queue()
        watch = MetadataWatch(
            kube,
            paths.CONFIGMAPS,
            lambda t, o: events.put_nowait((t, o)),
            namespace=namespace,
            label_selector="joch.dev/test-watch=yes",
        )
        watch.start(Listed(known, old_version))
        seen: list[tuple[str, str]] = []
        try:
            while len(seen) < 3:
                kind, obj = await asyncio.wait_for(events.get(), timeout=30)
                seen.append((kind, obj["metadata"]["name"]))
        finally:
            await watch.stop()
            await kube.aclose()
        return seen, watch.lists

    try:
        seen, lists = asyncio.run(scenario())
    finally:
        kube.close()
    assert lists == 1, f"{store}: the watch from a compacted version did not re-list"
    assert ("DELETED", "doomed") in seen, seen
    assert sorted(seen) == [("ADDED", "kept"), ("ADDED", "later"), ("DELETED", "doomed")], seen


def test_the_clusters_controllers_run_a_job_and_collect_its_pod(
    store: str, namespace: str, kube_api: k8s.ApiClient
) -> None:
    batch, core = k8s.BatchV1Api(kube_api), k8s.CoreV1Api(kube_api)
    batch.create_namespaced_job(namespace, fake_job("run"))

    def complete() -> k8s.V1Job:
        found = batch.read_namespaced_job("run", namespace)
        assert found.status.succeeded == 1, (store, found.status)
        return found

    eventually(complete)
    (pod,) = core.list_namespaced_pod(namespace, label_selector="job-name=run").items
    assert pod.status.phase == "Succeeded"
    batch.delete_namespaced_job("run", namespace, propagation_policy="Background")
    eventually(gone(lambda: core.read_namespaced_pod(pod.metadata.name, namespace)))
