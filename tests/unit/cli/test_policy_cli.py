"""`joch policy eval | preview | serve`: exit codes, JSON shapes, error messages (joch.cli.policy).

eval: examples/ against contexts: deny (exit 3), allow and modify (exit 0), the Decision's JSON shape;
--preflight; --all-policies; --now with --disable-rule (in force, then expired); a note on stderr
when no policy applies; policies and context from stdin, from a directory, inside a List; other kinds
ignored. Unusable input exits 2 with a message naming the file and field and no traceback: missing
file, empty directory, bad YAML (line and column), every FieldError of every invalid Policy, schema
errors, a non-object document, a duplicate, no Policy at all, a context that is missing, not JSON or
of the wrong shape, a bad --now or --disable-rule, stdin asked for twice, a bad setting.
preview (cluster reader injected): the table names support-triage with policy, rule, item and
reason (exit 3); -o json; "no agent would be newly denied" (exit 0); invalid policies (exit 2); a
cluster that cannot be read (exit 1), warnings on stderr. serve: flags reach run_standalone; port
and size validation. main(): the module entry point.
"""

from __future__ import annotations

import argparse
import io
import json
import pathlib
from typing import Any

import pytest
import yaml

from joch.cli import policy as policy_cli
from joch.decision_service import preview, serving
from joch.kube import errors
from tests import helpers
from tests.unit.decision_service import factories

CONTEXT = {
    "hook": "toolCallRequest",
    "agent": {
        "name": "support-triage",
        "namespace": "support",
        "labels": {"team": "support-platform", "env": "prod"},
    },
    "environment": {"name": "prod", "allowedProviders": ["openai", "anthropic"]},
    "tool": {"name": "slack.send", "sideEffect": "communication"},
    "data": {"contains": ["pii"]},
    "payload": {"text": "write to a@b.com"},
}
POLICY_DOC = {
    "apiVersion": "joch.dev/v1alpha1",
    "kind": "Policy",
    "metadata": {"name": "deny-openai", "namespace": "support"},
    "spec": {
        "rules": [{"when": {"model.provider": "openai"}, "action": {"deny": True, "reason": "no OpenAI"}}]
    },
}


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="joch")
    policy_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["policy", *argv])


def run_eval(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = policy_cli.eval_main(parse("eval", *argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def write_context(tmp_path: pathlib.Path, context: Any, name: str = "context.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(context) if not isinstance(context, str) else context)
    return str(path)


def write_docs(tmp_path: pathlib.Path, docs: list[Any], name: str = "policies.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


# --- eval: decisions --------------------------------------------------------------------------------------


def test_register_sets_the_handlers() -> None:
    assert parse("eval", "-f", "x", "--input", "c").handler is policy_cli.run_eval
    assert parse("preview", "-f", "x").handler is policy_cli.run_preview
    assert parse("serve").handler is policy_cli.run_serve
    with pytest.raises(SystemExit):
        parse()


def test_deny_exits_3_with_the_decision_as_json(tmp_path: pathlib.Path) -> None:
    code, out, err = run_eval("-f", str(helpers.EXAMPLES), "--input", write_context(tmp_path, CONTEXT))
    assert (code, err) == (3, "")
    assert json.loads(out) == {
        "decision": "deny",
        "reason": "Customer PII may not be sent over communication tools.",
        "policyId": "no-customer-data-exfiltration",
        "policyNamespace": "support",
        "policyVersion": "v1",
        "rule": 0,
    }


def test_modify_exits_0_with_the_redacted_request(tmp_path: pathlib.Path) -> None:
    context = {**CONTEXT, "tool": {"name": "mail.send", "sideEffect": "external_write"}}
    code, out, _ = run_eval("-f", str(helpers.EXAMPLES), "--input", write_context(tmp_path, context))
    decision = json.loads(out)
    assert (code, decision["decision"]) == (0, "modify")
    assert decision["modifiedRequest"] == {"text": "write to [REDACTED:emails]"}
    assert decision["requires"]["approval"]["approvers"] == ["team:support-leads"]


def test_allow_exits_0_and_preflight_skips_runtime_rules(tmp_path: pathlib.Path) -> None:
    path = write_context(tmp_path, CONTEXT)
    code, out, _ = run_eval("-f", str(helpers.EXAMPLES), "--input", path, "--preflight")
    assert (code, json.loads(out)) == (0, {"decision": "allow", "reason": "no rule matched"})


def test_a_note_when_no_policy_applies_and_all_policies(tmp_path: pathlib.Path) -> None:
    context = {"model": {"provider": "openai"}}
    policies = write_docs(tmp_path, [POLICY_DOC])
    code, out, err = run_eval("-f", policies, "--input", write_context(tmp_path, context))
    assert (code, json.loads(out)["decision"]) == (0, "allow")
    assert "note: none of the 1 policies applies to this context" in err
    code, out, err = run_eval("-f", policies, "--input", write_context(tmp_path, context), "--all-policies")
    assert (code, json.loads(out)["policyId"], err) == (3, "deny-openai", "")


def test_now_and_disable_rule(tmp_path: pathlib.Path) -> None:
    context = write_context(tmp_path, {"agent": {"namespace": "support"}, "model": {"provider": "openai"}})
    policies = write_docs(tmp_path, [POLICY_DOC])
    disable = ("--disable-rule", "support/deny-openai:0=2026-12-01T00:00:00Z")
    code, out, _ = run_eval("-f", policies, "--input", context, *disable, "--now", "2026-11-27T00:00:00Z")
    assert code == 0
    assert json.loads(out)["disabledRules"] == [
        {"policyId": "deny-openai", "policyNamespace": "support", "rule": 0, "until": "2026-12-01T00:00:00Z"}
    ]
    code, out, _ = run_eval("-f", policies, "--input", context, *disable, "--now", "2026-12-02T00:00:00")
    assert (code, json.loads(out)["decision"]) == (3, "deny")


def test_inputs_from_stdin_directories_and_lists(tmp_path: pathlib.Path) -> None:
    context = {"agent": {"namespace": "support"}, "model": {"provider": "openai"}}
    listed = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [POLICY_DOC]})
    code, _, _ = run_eval("-f", "-", "--input", write_context(tmp_path, context), stdin=listed)
    assert code == 3
    directory = tmp_path / "dir"
    directory.mkdir()
    write_docs(directory, [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, POLICY_DOC])
    code, _, _ = run_eval("-f", str(directory), "--input", "-", stdin=json.dumps(context))
    assert code == 3


def test_policies_without_namespace_go_to_dash_n(tmp_path: pathlib.Path) -> None:
    doc = json.loads(json.dumps(POLICY_DOC))
    del doc["metadata"]["namespace"]
    context = {"agent": {"namespace": "team-a"}, "model": {"provider": "openai"}}
    path = write_docs(tmp_path, [doc])
    code, out, _ = run_eval("-f", path, "-n", "team-a", "--input", write_context(tmp_path, context))
    assert (code, json.loads(out)["policyNamespace"]) == (3, "team-a")


# --- eval: unusable input ---------------------------------------------------------------------------------


def test_every_field_error_of_every_policy_is_reported(tmp_path: pathlib.Path) -> None:
    bad = {
        "apiVersion": "joch.dev/v1alpha1",
        "kind": "Policy",
        "metadata": {"name": "bad", "namespace": "support"},
        "spec": {
            "rules": [
                {"when": {"cost.runUSD": ">5"}, "action": "deny"},
                {"when": {"tool.name": "x"}, "action": "deny", "reason": "outside"},
                {"when": {"cel": "tool.name == "}, "action": "deny"},
            ]
        },
    }
    schema = {**bad, "metadata": {"name": "schema"}, "spec": {"rules": []}}
    path = write_docs(tmp_path, [bad, schema])
    code, out, err = run_eval("-f", path, "--input", write_context(tmp_path, {}))
    assert (code, out) == (2, "")
    assert (
        f"{path}: document 1 (Policy support/bad): spec.rules[0].when.cost.runUSD: cost has no field" in err
    )
    assert "spec.rules[1].reason: rule 1: reason belongs inside the action" in err
    assert "spec.rules[2].when.cel: rule 2: CEL does not compile" in err
    assert f"{path}: document 2 (Policy schema): spec.rules: List should have at least 1 item" in err


@pytest.mark.parametrize(
    ("files", "context", "fragment"),
    [
        pytest.param(["missing.yaml"], {}, "missing.yaml: no such file or directory", id="missing file"),
        pytest.param(["empty-dir"], {}, "empty-dir: no *.yaml or *.yml files", id="empty directory"),
        pytest.param(["bad.yaml"], {}, "bad.yaml: not valid YAML: line 2, column 1", id="bad YAML"),
        pytest.param(
            ["scalar.yaml"], {}, "document 1: expected a Kubernetes object (a map), got str", id="scalar"
        ),
        pytest.param(["other.yaml"], {}, "no Policy (joch.dev/v1alpha1) documents in", id="no policies"),
        pytest.param(["dup.yaml"], {}, "Policy support/deny-openai is also defined in", id="duplicate"),
        pytest.param(["ok.yaml"], None, "--input", id="context missing"),
        pytest.param(["ok.yaml"], "{not json", "context.json: not valid JSON", id="context not JSON"),
        pytest.param(["ok.yaml"], "[1]", "context: must be a JSON object, not a list", id="context a list"),
        pytest.param(
            ["ok.yaml"],
            {"tool": {"nme": "x"}},
            "context.tool.nme: unknown field (known: name, ",
            id="context field",
        ),
    ],
)
def test_unusable_input_exits_2_naming_the_problem(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, files: list[str], context: Any, fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    (tmp_path / "scalar.yaml").write_text("just text\n")
    write_docs(tmp_path, [{"apiVersion": "v1", "kind": "ConfigMap"}], "other.yaml")
    write_docs(tmp_path, [POLICY_DOC, POLICY_DOC], "dup.yaml")
    write_docs(tmp_path, [POLICY_DOC], "ok.yaml")
    context_path = "context.json" if context is not None else "absent.json"
    if context is not None:
        write_context(tmp_path, context)
    argv = [arg for file in files for arg in ("-f", file)]
    code, out, err = run_eval(*argv, "--input", context_path)
    assert (code, out) == (2, "")
    assert err.startswith("joch policy eval: error: ")
    assert fragment in err


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        pytest.param(("--now", "yesterday"), "--now 'yesterday': not an RFC 3339 time", id="bad --now"),
        pytest.param(
            ("--disable-rule", "x=2026-01-01T00:00:00Z"), "expected [NAMESPACE/]NAME:RULE=UNTIL", id="no rule"
        ),
        pytest.param(
            ("--disable-rule", "x:1=soon"), "--disable-rule 'soon': not an RFC 3339 time", id="bad until"
        ),
    ],
)
def test_bad_flags_exit_2(tmp_path: pathlib.Path, flags: tuple[str, ...], fragment: str) -> None:
    policies = write_docs(tmp_path, [POLICY_DOC])
    code, _, err = run_eval("-f", policies, "--input", write_context(tmp_path, {}), *flags)
    assert code == 2
    assert fragment in err


def test_stdin_cannot_feed_both(tmp_path: pathlib.Path) -> None:
    code, _, err = run_eval("-f", "-", "--input", "-")
    assert code == 2
    assert "either -f or --input, not both" in err


def test_a_bad_setting_exits_2(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOCH_KEEP_MANIFESTS", "0")
    code, _, err = run_eval("-f", write_docs(tmp_path, [POLICY_DOC]), "--input", write_context(tmp_path, {}))
    assert code == 2
    assert "JOCH_KEEP_MANIFESTS" in err or "keep_manifests" in err


CEL_DOC = {
    "apiVersion": "joch.dev/v1alpha1",
    "kind": "Policy",
    "metadata": {"name": "run-cost", "namespace": "support"},
    "spec": {"rules": [{"when": {"cel": "cost.runUsd > 1.0"}, "action": "deny"}]},
}


def test_the_cel_backend_comes_from_the_flag_then_the_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An int compared with a double: the Rust backend compares them (0 > 1.0 is false: allow),
    # cel-python refuses (an evaluation error: fail-closed deny), so the exit status shows the backend.
    args = (
        "-f",
        write_docs(tmp_path, [CEL_DOC]),
        "--input",
        write_context(tmp_path, {"cost": {"runUsd": 0}}),
    )
    monkeypatch.delenv("JOCH_CEL_BACKEND", raising=False)
    assert run_eval(*args, "--all-policies")[0] == 0
    code, out, _ = run_eval(*args, "--all-policies", "--cel-backend", "cel-python")
    assert (code, json.loads(out)["decision"]) == (3, "deny")
    monkeypatch.setenv("JOCH_CEL_BACKEND", "celpy")
    assert run_eval(*args, "--all-policies")[0] == 3
    assert run_eval(*args, "--all-policies", "--cel-backend", "rust")[0] == 0
    monkeypatch.setenv("JOCH_CEL_BACKEND", "v8")
    code, _, err = run_eval(*args, "--all-policies")
    assert code == 2
    assert "JOCH_CEL_BACKEND: unknown CEL backend 'v8'" in err


# --- preview ----------------------------------------------------------------------------------------------


def run_preview(*argv: str, read: Any = None) -> tuple[int, str, str]:
    def from_examples(_: argparse.Namespace) -> tuple[preview.Snapshot, list[str]]:
        return factories.snapshot(), ["Budget x skipped: invalid"]

    out, err = io.StringIO(), io.StringIO()
    code = policy_cli.preview_main(
        parse("preview", *argv), stdout=out, stderr=err, read=read or from_examples
    )
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_preview_table_names_the_newly_denied_agent(tmp_path: pathlib.Path) -> None:
    code, out, err = run_preview("-f", write_docs(tmp_path, [POLICY_DOC]))
    assert code == 3
    header, row, _, summary = out.splitlines()
    assert header.split() == ["AGENT", "ITEM", "POLICY", "RULE", "REASON"]
    assert row.split() == [
        "support/support-triage",
        "model",
        "openai:gpt-5-thinking",
        "support/deny-openai",
        "(v1)",
        "0",
        "no",
        "OpenAI",
    ]
    assert summary == "1 agent(s) of 1 evaluated would be newly denied by support/deny-openai@v1"
    assert "warning: Budget x skipped: invalid" in err


def test_preview_json(tmp_path: pathlib.Path) -> None:
    code, out, _ = run_preview("-f", write_docs(tmp_path, [POLICY_DOC]), "-o", "json")
    body = json.loads(out)
    assert code == 3
    assert body["policies"] == ["support/deny-openai@v1"]
    assert body["agentsEvaluated"] == 1
    assert body["newlyDenied"][0]["agent"] == {"namespace": "support", "name": "support-triage"}
    assert body["newlyDenied"][0]["rule"] == 0
    assert body["noLongerDenied"] == []


def test_preview_without_denials_exits_0(tmp_path: pathlib.Path) -> None:
    harmless = {**POLICY_DOC, "spec": {"rules": [{"when": {"tool.name": "rm"}, "action": "deny"}]}}
    code, out, _ = run_preview("-f", write_docs(tmp_path, [harmless]))
    assert code == 0
    assert out == f"{policy_cli.NO_DENIAL} by support/deny-openai@v1 (1 agent(s) evaluated)\n"


def test_preview_errors(tmp_path: pathlib.Path) -> None:
    bad = {**POLICY_DOC, "spec": {"rules": [{"action": "explode"}]}}
    code, out, err = run_preview("-f", write_docs(tmp_path, [bad]))
    assert (code, out) == (2, "")
    assert "spec.rules[0].action" in err

    def unreachable(_: argparse.Namespace) -> Any:
        raise errors.Unavailable("GET /apis: connection refused")

    code, _, err = run_preview("-f", write_docs(tmp_path, [POLICY_DOC]), read=unreachable)
    assert code == 1
    assert "cannot read the cluster: GET /apis: connection refused" in err


def test_preview_with_an_unusable_kubeconfig_exits_1(tmp_path: pathlib.Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = parse("preview", "-f", write_docs(tmp_path, [POLICY_DOC]), "--kubeconfig", str(tmp_path / "nope"))
    code = policy_cli.preview_main(args, stdout=out, stderr=err)
    assert code == 1
    assert "no usable kubeconfig" in err.getvalue()


# --- serve and main ---------------------------------------------------------------------------------------


def test_serve_passes_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[serving.StandaloneOptions] = []
    monkeypatch.setattr(serving, "run_standalone", seen.append)
    args = parse(
        "serve",
        "--kubeconfig",
        "/k",
        "--context",
        "c",
        "--host",
        "0.0.0.0",
        "--port",
        "0",
        "-n",
        "a",
        "-n",
        "a",
        "-n",
        "b",
        "--max-body",
        "10",
        "--shared-namespaces",
        "shared",
        "-q",
    )
    assert policy_cli.run_serve(args) == 0
    (options,) = seen
    assert (options.kubeconfig, options.context, options.host, options.port) == ("/k", "c", "0.0.0.0", 0)
    assert (options.namespaces, options.max_body, options.settings.shared_namespaces) == (
        ("a", "b"),
        10,
        ("shared",),
    )


def test_serve_failures_are_messages(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(_: serving.StandaloneOptions) -> None:
        raise RuntimeError("cannot listen")

    monkeypatch.setattr(serving, "run_standalone", fail)
    assert policy_cli.run_serve(parse("serve")) == 1
    assert "joch policy serve: error: cannot listen" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [("--port", "-1"), ("--port", "x"), ("--port", "70000"), ("--max-body", "0")]
)
def test_serve_flag_validation(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse("serve", *argv)


def test_main_runs_a_subcommand(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    context = write_context(tmp_path, {"agent": {"namespace": "support"}, "model": {"provider": "openai"}})
    assert policy_cli.main(["eval", "-f", write_docs(tmp_path, [POLICY_DOC]), "--input", context]) == 3
    assert json.loads(capsys.readouterr().out)["policyId"] == "deny-openai"
