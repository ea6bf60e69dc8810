"""The operator killed with SIGKILL in the middle of a burst of 50 Agent creates, then restarted.

While it is down, 5 of the Agents are deleted and 10 are updated (generation 2), among them some that
were compiled before the kill and some that were not. After the restart:
every remaining Agent is Ready at its generation, each has exactly one ConfigMap per compiled
generation (named <agent>-g<generation>, owned by it, none newer than the Agent), the newest one is
what its status points at (same sha), deleted Agents have no ConfigMaps left, and the ConfigMap bytes
equal ``joch compile`` of the same objects.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from joch.devcluster import find_binary
from tests.integration.operator_fixtures import (  # noqa: F401
    Cluster,
    StartOperator,
    agent_doc,
    apply,
    cluster_fixture,
    compile_from_cluster,
    eventually,
    ready,
    start_operator_fixture,
    support_triage,
    to_yaml,
)

pytestmark = pytest.mark.integration

Kubectl = Callable[..., Any]
AGENTS = 50


def test_sigkill_mid_burst_then_restart_converges(
    tmp_path: Path,
    namespace: str,
    kubeconfig: str,
    kubectl: Kubectl,
    cluster: Cluster,
    start_operator: StartOperator,
) -> None:
    example = support_triage(namespace)
    operator = start_operator(namespace)
    apply(kubectl, [d for d in example.docs if d["kind"] != "Agent"])
    names = [f"burst-{i:02d}" for i in range(AGENTS)]

    agents = tmp_path / "agents.yaml"
    agents.write_text(to_yaml([agent_doc(example, name) for name in names]))
    burst = subprocess.Popen(
        [str(find_binary("kubectl")), f"--kubeconfig={kubeconfig}", "apply", "-f", str(agents)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def some_compiled() -> None:
        assert len(cluster.manifests(namespace)) >= 5

    eventually(some_compiled, timeout=60, interval=0.05)
    operator.kill()
    written_at_kill = len(cluster.manifests(namespace))
    out, err = burst.communicate(timeout=120)
    assert burst.returncode == 0, err + out

    deleted = [*names[:3], *names[-2:]]  # some compiled before the kill, some never
    updated = names[3:13]
    for name in deleted:
        cluster.delete("Agent", namespace, name)
    for name in updated:
        cluster.patch(
            "Agent", namespace, name, {"spec": {"description": "updated while the operator was down"}}
        )

    restarted = start_operator(namespace)
    remaining = [name for name in names if name not in deleted]
    for name in remaining:
        eventually(lambda n=name: ready(cluster, namespace, n), timeout=120)

    def cleaned() -> None:
        manifests = cluster.manifests(namespace)
        owners = {cm.metadata.labels["joch.dev/agent"] for cm in manifests.values()}
        assert not owners & set(deleted), sorted(owners & set(deleted))

    eventually(cleaned, timeout=60)

    manifests = cluster.manifests(namespace)
    by_agent: dict[str, list[Any]] = {}
    for cm in manifests.values():
        by_agent.setdefault(cm.metadata.labels["joch.dev/agent"], []).append(cm)
    assert set(by_agent) == set(remaining)
    for name in remaining:
        agent = cluster.agent(namespace, name)
        generation = agent["metadata"]["generation"]
        status = agent["status"]
        cms = by_agent[name]
        generations = sorted(int(cm.metadata.labels["joch.dev/generation"]) for cm in cms)
        assert len(generations) == len(set(generations)), f"{name}: duplicate generations {generations}"
        assert generations[-1] == generation, f"{name}: {generations} at generation {generation}"
        assert set(generations) <= set(range(1, generation + 1))
        for cm in cms:
            assert cm.metadata.name == f"{name}-g{cm.metadata.labels['joch.dev/generation']}"
            assert cm.metadata.owner_references[0].uid == agent["metadata"]["uid"]
        newest = next(cm for cm in cms if cm.metadata.name == f"{name}-g{generation}")
        assert status["compiledManifest"]["name"] == newest.metadata.name
        assert status["compiledManifest"]["sha256"] == newest.metadata.annotations["joch.dev/manifest-sha256"]
        manifest = yaml.safe_load(newest.data["manifest.yaml"])
        assert manifest["spec"]["agent"]["generation"] == generation
    assert written_at_kill < AGENTS, "the operator was not killed mid-burst"
    compiled = compile_from_cluster(kubectl, namespace, example)
    for name in remaining:
        generation = cluster.agent(namespace, name)["metadata"]["generation"]
        assert compiled[f"{name}-g{generation}"] == manifests[f"{name}-g{generation}"].data["manifest.yaml"]
    log = restarted.current_log()
    assert "Traceback" not in log, restarted.tail()
