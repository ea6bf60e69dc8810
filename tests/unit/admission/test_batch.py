"""Batches (joch validate / joch apply) and the `joch validate` command.

| case | expected |
|---|---|
| examples/ | every document passes |
| references resolved within the batch, in any order | pass |
| a reference nothing defines, strict | error; --allow-pending: warning |
| one bad document | only it fails, with its field path |
| the same object twice | the second is an error |
| a Namespace in the batch | its label places Agents (D5) |
| defaults applied before judging (Tool toolName) | duplicate callable names detected |
| non-joch and malformed documents | listed, not judged / errors |
| promotion gates offline: the Eval's / Approval's own status in the batch | Passed: pass; none: denied |
| promotion gates against a cluster: the cluster's status, not the document's | as the cluster says |
| an existing Deployment only scaled, its Eval now failing | pass (gates not due); agentRef changed: denied |
| joch validate: exit codes, YAML errors, missing paths | 0 / 1 / 2, never a traceback |

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import argparse
import io
import pathlib
from typing import Any

import pytest
import yaml

from joch.cli import validate
from joch.domain.admission import Admission, Document, check_batch
from joch.domain.compilation import Catalog
from tests import helpers
from tests.unit.admission import factories as f


def _check(docs: list[Any], **kwargs: Any) -> list[Any]:
    return check_batch(
        [Document(f"doc#{i}", d) for i, d in enumerate(docs)], admission=Admission(f.SETTINGS), **kwargs
    )


def test_examples_pass() -> None:
    results = _check(helpers.example_documents(), strict_missing=True)
    assert all(r.ok for r in results), [r.verdict.message() for r in results if not r.ok]


def test_order_does_not_matter() -> None:
    docs = [f.agent(), *f.fleet()]
    assert all(r.ok for r in _check(list(reversed(docs)), strict_missing=True))
    assert all(r.ok for r in _check(docs, strict_missing=True))


def test_missing_references_strict_and_pending() -> None:
    [strict] = _check([f.agent()], strict_missing=True)
    assert not strict.ok
    assert (
        "spec.modelRoute.routeRef: ModelRoute support/research-default not found" in strict.verdict.message()
    )
    [pending] = _check([f.agent()], strict_missing=False)
    assert pending.ok
    assert pending.verdict.warnings


def test_one_bad_document() -> None:
    bad = f.route(fallback=["openai:gpt-5-thinking"])
    docs = [d for d in f.fleet() if d["kind"] != "ModelRoute"] + [bad, f.agent()]
    results = _check(docs, strict_missing=True)
    failed = [r for r in results if not r.ok]
    assert [r.label for r in failed] == ["ModelRoute/research-default (namespace support)"]
    assert "spec.strategy.fallback[0]" in failed[0].verdict.message()


def test_duplicates_in_the_batch() -> None:
    results = _check([f.tool(), f.tool()])
    assert results[0].ok
    assert "metadata.name: Tool zendesk.search is also defined in doc#0" in results[1].verdict.message()


def test_namespace_documents_place_agents() -> None:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": f.NS, "labels": {"joch.dev/environment": "prod"}},
    }
    results = _check([namespace, *f.prod_scenario(), f.agent(labels={})])
    assert results[0].verdict is None
    assert not results[-1].ok
    assert "allowlisted-providers-only" in results[-1].verdict.message()


def test_defaults_are_applied_before_judging() -> None:
    docs = [*f.fleet(), f.tool("zendesk.search-v2", toolName="zendesk.search")]
    [*_, agent] = _check([*docs, f.agent(tools=[{"name": "zendesk.search"}, {"name": "zendesk.search-v2"}])])
    assert "callable names must be unique" in agent.verdict.message()
    tool = _check([f.tool()])[0]
    assert tool.body["spec"]["toolName"] == "zendesk.search"


def test_default_namespace() -> None:
    doc = f.tool()
    del doc["metadata"]["namespace"]
    [result] = _check([doc], default_namespace="team-x")
    assert result.namespace == "team-x"
    assert result.body["metadata"]["namespace"] == "team-x"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        pytest.param(["a", "list"], "(object): must be an object, not list", id="a list"),
        pytest.param(
            {"kind": "ConfigMap", "metadata": {"name": "x"}},
            "apiVersion: required field is missing",
            id="no apiVersion",
        ),
        pytest.param(
            {"apiVersion": "joch.dev/v1alpha1", "kind": "Gadget", "metadata": {"name": "g"}},
            "joch does not serve Gadget",
            id="unknown joch kind",
        ),
    ],
)
def test_malformed_documents(raw: Any, expected: str) -> None:
    [result] = _check([raw])
    assert not result.ok
    assert expected in result.verdict.message()


def test_foreign_kinds_are_left_to_the_api_server() -> None:
    [result] = _check([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}])
    assert result.ok
    assert result.verdict is None


# --- joch validate -----------------------------------------------------------------------------------------


def _run(*argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    validate.register(parser.add_subparsers())
    args = parser.parse_args(["validate", *argv])
    out = io.StringIO()
    return validate.run(args, out=out), out.getvalue()


GATED = f.deployment(promotion={"requiresEval": "triage-quality", "requiresApproval": "release-manager"})


def _gated_batch(*gates: dict[str, Any]) -> list[Any]:
    return [*f.fleet(), f.agent(), *gates, GATED]


def _deployment_result(results: list[Any]) -> Any:
    [result] = [r for r in results if r.kind == "Deployment"]
    return result


def test_offline_the_batch_status_of_evals_and_approvals_is_used() -> None:
    passed = _deployment_result(_check(_gated_batch(f.eval_(), f.approval()), strict_missing=True))
    assert passed.ok, passed.verdict.message()
    never_run = _deployment_result(
        _check(_gated_batch(f.eval_(phase=None), f.approval()), strict_missing=True)
    )
    assert not never_run.ok
    assert "Deployment/triage: spec.promotion.requiresEval: Eval support/triage-quality has not run yet" in (
        never_run.verdict.message()
    )
    pending = _deployment_result(
        _check(_gated_batch(f.eval_(), f.approval(phase="Pending", decision=None)), strict_missing=True)
    )
    assert "spec.promotion.requiresApproval:" in pending.verdict.message()
    assert "it is Pending" in pending.verdict.message()


def test_offline_a_malformed_status_is_an_error_naming_the_field() -> None:
    broken = f.eval_()
    broken["status"]["scores"] = {"accuracy": "high"}
    results = _check(_gated_batch(broken, f.approval()))
    [evaluation] = [r for r in results if r.kind == "Eval"]
    assert not evaluation.ok
    assert "Eval/triage-quality: status.scores.accuracy: Input should be a valid number" in (
        evaluation.verdict.message()
    )


def _cluster(*docs: dict[str, Any]) -> Catalog:
    return Catalog([f.parse(d) for d in docs], shared_namespaces=f.SETTINGS.shared_namespaces)


def test_against_a_cluster_its_status_counts_not_the_documents() -> None:
    cluster = _cluster(*f.fleet(), f.agent(), f.eval_(), f.approval())
    unstatused = [f.eval_(phase=None), f.approval(phase=None)]
    applied = _deployment_result(_check(_gated_batch(*unstatused), base=cluster, strict_missing=True))
    assert applied.ok, applied.verdict.message()

    failed = _cluster(*f.fleet(), f.agent(), f.eval_(phase="Failed"), f.approval())
    claims = _check(_gated_batch(f.eval_(), f.approval()), base=failed, strict_missing=True)
    message = _deployment_result(claims).verdict.message()
    assert "Eval support/triage-quality: its newest run for Agent support-triage generation 1" in message

    new = _cluster(*f.fleet(), f.agent())
    fresh = _check(_gated_batch(f.eval_(), f.approval()), base=new, strict_missing=True)
    message = _deployment_result(fresh).verdict.message()
    assert "has not run yet" in message, "applying an Eval never writes its status"
    assert "it is Pending" in message


def test_against_a_cluster_an_existing_deployment_is_an_update() -> None:
    cluster = _cluster(*f.fleet(), f.agent(), f.agent("other-agent"), f.eval_(phase="Failed"), GATED)
    scaled = f.merge(GATED, {"spec": {"replicas": 7}})
    result = _deployment_result(_check([scaled], base=cluster, strict_missing=True))
    assert result.ok, result.verdict.message()
    moved = f.merge(GATED, {"spec": {"agentRef": {"name": "other-agent"}}})
    denied = _deployment_result(_check([moved], base=cluster, strict_missing=True))
    assert "spec.promotion.requiresEval" in denied.verdict.message()


def test_validate_examples(tmp_path: pathlib.Path) -> None:
    code, out = _run("-f", str(helpers.EXAMPLES))
    assert code == 0, out
    assert "21 documents valid" in out or "documents valid" in out


def test_validate_rejects_one_bad_document(tmp_path: pathlib.Path) -> None:
    for index, doc in enumerate(
        [*f.fleet(), f.agent(tools=[{"name": "zendesk.search"}, {"name": "zendesk.search"}])]
    ):
        (tmp_path / f"{index:02}.yaml").write_text(yaml.safe_dump(doc))
    code, out = _run("-f", str(tmp_path))
    assert code == 1
    assert "FAIL  Agent/support-triage (namespace support)" in out
    assert "error: Agent/support-triage: spec.tools[1]: duplicate tool zendesk.search" in out
    assert "1 of 10 documents rejected" in out


def test_validate_reports_yaml_errors(tmp_path: pathlib.Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: Agent\n  metadata: [unclosed\n")
    code, out = _run("-f", str(tmp_path / "bad.yaml"))
    assert code == 1
    assert "not valid YAML (line" in out


def test_validate_missing_path(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    code, _ = _run("-f", str(tmp_path / "nope.yaml"))
    assert code == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_validate_invalid_utf8(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    (tmp_path / "x.yaml").write_bytes(b"kind: \xff\xfe\n")
    code, _ = _run("-f", str(tmp_path / "x.yaml"))
    assert code == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_validate_allow_pending(tmp_path: pathlib.Path) -> None:
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(f.agent()))
    assert _run("-f", str(tmp_path))[0] == 1
    code, out = _run("-f", str(tmp_path), "--allow-pending")
    assert code == 0
    assert "warning: Agent/support-triage: spec.framework.adapterRef" in out
