"""`joch apply -f` against the real API server with the webhooks registered.

| case | expected |
|---|---|
| the worked example (one directory, any order) | exit 0, every object stored; again: exit 0 (idempotent) |
| the same directory with one bad document | exit 1, the field named, the cluster unchanged (listed) |
| a document only the API server rejects (core kind) | exit 1 via the server-side dry run, nothing written |
| a reference nothing satisfies | exit 1; with --allow-pending exit 0 and a warning |
| a Namespace created by the batch | its objects checked offline, then applied after it |
| --dry-run | exit 0, nothing written |
| an unreachable cluster / a missing file | exit 2 with one line, no traceback |
"""

from __future__ import annotations

import argparse
import copy
import io
import pathlib
import uuid
from typing import Any

import pytest
from kubernetes import client

from joch.api import v1alpha1
from joch.api.v1alpha1 import meta
from joch.cli import apply
from tests.integration.admission_fixtures import (
    Harness,
    harness_fixture,
    webhooks_fixture,
    write_docs,
)
from tests.integration.operator_fixtures import support_triage
from tests.unit.admission import factories as f

pytestmark = pytest.mark.integration

webhooks = pytest.fixture(scope="module")(webhooks_fixture)
harness = pytest.fixture(harness_fixture)


def _joch_apply(*argv: str, kubeconfig: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    apply.register(parser.add_subparsers())
    args = parser.parse_args(["apply", "--kubeconfig", kubeconfig, *argv])
    out = io.StringIO()
    return apply.run(args, out=out), out.getvalue()


def _snapshot(api: client.ApiClient, namespace: str, suffix: str) -> dict[str, list[str]]:
    """Every joch object of the namespace, and the cluster-scoped ones carrying the suffix."""
    custom = client.CustomObjectsApi(api)
    found: dict[str, list[str]] = {}
    for model in v1alpha1.KINDS:
        crd = model.crd
        if crd.scope == "Namespaced":
            items = custom.list_namespaced_custom_object(crd.group, meta.VERSION, namespace, crd.plural)[
                "items"
            ]
        else:
            items = custom.list_cluster_custom_object(crd.group, meta.VERSION, crd.plural)["items"]
            items = [i for i in items if suffix in i["metadata"]["name"]]
        found[crd.kind] = sorted(i["metadata"]["name"] for i in items)
    configmaps = client.CoreV1Api(api).list_namespaced_config_map(namespace).items
    found["ConfigMap"] = sorted(c.metadata.name for c in configmaps if c.metadata.name != "kube-root-ca.crt")
    return found


def _example(namespace: str) -> tuple[list[dict[str, Any]], str]:
    example = support_triage(namespace)
    return example.docs, example.suffix


def test_example_applies_and_reapplies(harness: Harness, kubeconfig: str, tmp_path: pathlib.Path) -> None:
    docs, suffix = _example(harness.namespace)
    write_docs(tmp_path, list(reversed(docs)))  # order does not matter
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 0, out
    assert f"{len(docs)} documents applied" in out
    assert harness.get("Agent", "support-triage") is not None
    assert harness.get("Environment", f"prod-{suffix}") is not None
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 0, out
    harness.cleanup_cluster_scoped(docs)


def test_one_bad_document_leaves_the_cluster_unchanged(
    harness: Harness, kube_api: client.ApiClient, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    docs, suffix = _example(harness.namespace)
    bad = f.policy(
        "broken", [{"when": {"cel": "tool.name == "}, "action": "deny"}], namespace=harness.namespace
    )
    write_docs(tmp_path, [*docs[:5], bad, *docs[5:]])
    before = _snapshot(kube_api, harness.namespace, suffix)
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 1, out
    assert "FAIL  Policy/broken" in out
    assert "error: Policy/broken: spec.rules[0].when.cel: rule 0: CEL does not compile" in out
    assert "nothing was applied" in out
    assert out.count("FAIL") == 1
    assert _snapshot(kube_api, harness.namespace, suffix) == before


def test_server_side_dry_run_failure_blocks_the_batch(
    harness: Harness, kube_api: client.ApiClient, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    docs, suffix = _example(harness.namespace)
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Not_Valid", "namespace": harness.namespace},
    }
    write_docs(tmp_path, [*docs, bad])
    before = _snapshot(kube_api, harness.namespace, suffix)
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 1, out
    assert "FAIL  ConfigMap/Not_Valid" in out
    assert "server dry-run:" in out
    assert _snapshot(kube_api, harness.namespace, suffix) == before


def test_policy_denial_against_the_cluster_state(
    harness: Harness, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    """The Environment already in the cluster denies the Agent's model: the batch is judged against it
    (and the webhooks deny it again in the server-side dry run)."""
    docs, _ = _example(harness.namespace)
    environment = next(d for d in docs if d["kind"] == "Environment")
    tightened = copy.deepcopy(environment)
    tightened["spec"]["allowedProviders"] = ["anthropic"]
    harness.setup([d for d in docs if d["kind"] not in ("Agent", "Deployment")])
    harness.setup([tightened])
    write_docs(tmp_path, [d for d in docs if d["kind"] in ("Agent",)])
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 1, out
    assert "FAIL  Agent/support-triage" in out
    assert "no-customer-data-exfiltration (v1) rule 1 denies model openai:gpt-5-thinking" in out
    assert 'server dry-run: admission webhook "validate.agents.joch.dev" denied the request' in out
    assert harness.get("Agent", "support-triage") is None
    harness.cleanup_cluster_scoped(docs)


def test_pending_references(harness: Harness, kubeconfig: str, tmp_path: pathlib.Path) -> None:
    write_docs(tmp_path, [harness.place(f.agent(labels={"env": "dev"}))])
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    assert code == 1, out
    assert f"spec.modelRoute.routeRef: ModelRoute {harness.namespace}/research-default not found" in out
    assert harness.get("Agent", "support-triage") is None
    code, out = _joch_apply("-f", str(tmp_path), "--allow-pending", kubeconfig=kubeconfig)
    assert code == 0, out
    assert "warning: Agent/support-triage: spec.modelRoute.routeRef" in out
    assert harness.get("Agent", "support-triage") is not None


def test_namespace_created_by_the_batch(
    kube_api: client.ApiClient, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    name = f"t-apply-new-{uuid.uuid4().hex[:6]}"
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"joch.dev/test": "true"}},
    }
    tool = f.tool("slack.send")
    tool["metadata"]["namespace"] = name
    write_docs(tmp_path, [tool, namespace])
    code, out = _joch_apply("-f", str(tmp_path), kubeconfig=kubeconfig)
    try:
        assert code == 0, out
        assert f"note: namespace {name} is created by this batch: checked offline only" in out
        stored = client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            "tools.joch.dev", "v1alpha1", name, "tools", "slack.send"
        )
        assert stored["spec"]["toolName"] == "slack.send"
    finally:
        client.CoreV1Api(kube_api).delete_namespace(name)


def test_dry_run_writes_nothing(
    harness: Harness, kube_api: client.ApiClient, kubeconfig: str, tmp_path: pathlib.Path
) -> None:
    docs, suffix = _example(harness.namespace)
    write_docs(tmp_path, docs)
    before = _snapshot(kube_api, harness.namespace, suffix)
    code, out = _joch_apply("-f", str(tmp_path), "--dry-run", kubeconfig=kubeconfig)
    assert code == 0, out
    assert "would be applied (dry run)" in out
    assert _snapshot(kube_api, harness.namespace, suffix) == before


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    code, _ = _joch_apply("-f", str(tmp_path / "missing"), kubeconfig=str(tmp_path / "kubeconfig"))
    assert code == 2
    assert "no such file or directory" in capsys.readouterr().err
    write_docs(tmp_path / "docs", [f.tool()])
    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
        "current-context: c\n"
    )
    code, _ = _joch_apply("-f", str(tmp_path / "docs"), kubeconfig=str(tmp_path / "kubeconfig"))
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("joch apply: error: cannot reach")
    assert "Traceback" not in err
