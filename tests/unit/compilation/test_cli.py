"""`joch compile`: exit codes, byte-identical output, input errors without tracebacks.

Cases: examples/ compiles (exit 0) and prints exactly the golden manifest, which is byte-identical to
the ConfigMap data the operator would write; files given one by one, through a directory, as a
``kind: List`` or on stdin give the same bytes; several agents are printed sorted; --agent (name,
ns/name, unknown, ambiguous); --namespace-labels feeds D5; -n for objects without a namespace;
--default-environment / --shared-namespaces; problems go to stderr in the documented format with exit
1 and the agent is not printed; unusable input (missing path, empty directory, bad YAML, an object that
fails validation, a non-object document, a duplicate, a malformed flag) exits 2 with a clear message.

Decision numbers (D2, D5, ...) refer to docs/decisions.md.
"""

from __future__ import annotations

import argparse
import io
import pathlib
from collections.abc import Iterable
from typing import Any

import pytest
import yaml

from joch.api.v1alpha1 import meta
from joch.cli import compile as compile_cli
from joch.domain import compilation
from joch.domain.settings import OperatorSettings
from tests import helpers
from tests.unit.compilation import factories as f

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden" / "support-triage.yaml"


def run(*argv: str, stdin: str = "") -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="joch")
    compile_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["compile", *argv])
    out, err = io.StringIO(), io.StringIO()
    code = compile_cli.main(args, stdout=out, stderr=err, stdin=io.StringIO(stdin))
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def documents(stdout: str) -> list[str]:
    assert stdout == "" or stdout.startswith("---\n")
    return stdout.split("---\n")[1:]


def write(path: pathlib.Path, objects: Iterable[meta.Resource | dict[str, Any]]) -> pathlib.Path:
    docs = [obj if isinstance(obj, dict) else obj.wire() for obj in objects]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def test_register_sets_the_handler() -> None:
    parser = argparse.ArgumentParser()
    compile_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compile", "-f", "x"])
    assert args.handler is compile_cli.run


def test_examples_compile_to_the_golden_bytes_the_operator_would_store() -> None:
    code, out, err = run("-f", str(helpers.EXAMPLES))
    assert (code, err) == (0, "")
    (doc,) = documents(out)
    assert doc == GOLDEN.read_text()
    settings = OperatorSettings()
    cat = compile_cli.load_catalog([str(helpers.EXAMPLES)], default_namespace="default", settings=settings)
    (agent,) = cat.agents()
    compiled = compilation.compile_agent(compilation.gather(agent, cat, settings), settings)
    assert doc == compilation.desired_configmap(compiled, "any-uid")["data"]["manifest.yaml"]


def test_files_one_by_one_give_the_same_bytes() -> None:
    files = [str(p) for p in sorted(helpers.EXAMPLES.glob("*.yaml"), reverse=True)]
    reference = run("-f", str(helpers.EXAMPLES))[1]
    code, out, _ = run(*[arg for file in files for arg in ("-f", file)])
    assert (code, out) == (0, reference)


def test_list_documents_and_stdin(tmp_path: pathlib.Path) -> None:
    reference = run("-f", str(helpers.EXAMPLES))[1]
    items = helpers.example_documents()
    listing = {"apiVersion": "v1", "kind": "List", "items": items}
    write(tmp_path / "all.yaml", [listing])
    assert run("-f", str(tmp_path / "all.yaml"))[1] == reference
    code, out, _ = run("-f", "-", stdin=yaml.safe_dump_all(items))
    assert (code, out) == (0, reference)


def test_several_agents_are_printed_sorted_and_can_be_selected(tmp_path: pathlib.Path) -> None:
    objects = [*f.world(), f.agent("alpha"), f.agent("zulu")]
    path = write(tmp_path / "fleet.yaml", f.shuffled(objects, 3))
    code, out, _ = run("-f", str(path))
    assert code == 0
    assert [yaml.safe_load(doc)["metadata"]["name"] for doc in documents(out)] == [
        "alpha-g1",
        "triage-g1",
        "zulu-g1",
    ]
    for selector in ("zulu", f"{f.NS}/zulu"):
        code, out, _ = run("-f", str(path), "--agent", selector)
        assert code == 0
        assert [yaml.safe_load(doc)["metadata"]["name"] for doc in documents(out)] == ["zulu-g1"]


def test_unknown_and_ambiguous_agent(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "fleet.yaml", [*f.world(), f.agent("triage", "team-b")])
    code, _, err = run("-f", str(path), "--agent", "nobody")
    assert code == 2
    assert "no Agent nobody in the input (agents: team-a/triage, team-b/triage)" in err
    code, _, err = run("-f", str(path), "--agent", "triage")
    assert code == 2
    assert "ambiguous" in err


def test_namespace_labels_and_default_environment_feed_d5(tmp_path: pathlib.Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        [*f.world(), {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f.NS}}],
    )

    def environment(*flags: str) -> str:
        code, out, err = run("-f", str(path), *flags)
        assert code == 0, err
        return str(yaml.safe_load(documents(out)[0])["spec"]["environment"])

    assert environment() == "dev"
    assert environment("--default-environment", "qa") == "qa"
    assert environment("--namespace-labels", f"{f.NS}=joch.dev/environment=staging") == "staging"


def test_objects_without_namespace_take_the_n_flag(tmp_path: pathlib.Path) -> None:
    docs = []
    for obj in f.world():
        doc = obj.wire()
        doc["metadata"].pop("namespace", None)
        docs.append(doc)
    path = write(tmp_path / "w.yaml", docs)
    code, out, _ = run("-f", str(path), "-n", "blue")
    assert code == 0
    assert yaml.safe_load(documents(out)[0])["metadata"]["namespace"] == "blue"


def test_shared_namespaces_flag(tmp_path: pathlib.Path) -> None:
    objects = [*f.without(f.world(), "Model", "big"), f.model("big", "openai", "models")]
    path = write(tmp_path / "w.yaml", objects)
    assert run("-f", str(path))[0] == 1
    assert run("-f", str(path), "--shared-namespaces", "models,joch-system")[0] == 0


def test_problems_go_to_stderr_with_exit_1(tmp_path: pathlib.Path) -> None:
    objects = [*f.without(f.world(), "Tool", "search"), f.agent("fine", tools=[{"name": "create-ticket"}])]
    path = write(tmp_path / "w.yaml", objects)
    code, out, err = run("-f", str(path))
    assert code == 1
    assert [yaml.safe_load(doc)["metadata"]["name"] for doc in documents(out)] == ["fine-g1"]
    assert err.splitlines() == [
        "Agent/team-a/triage: spec.tools[0]: Tool team-a/search not found",
        "joch compile: 1 of 2 agent(s) not compiled",
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("a: [1, 2\n", "not valid YAML: line 2, column 1", id="bad yaml"),
        pytest.param(
            "- 1\n- 2\n", "document 1: expected a Kubernetes object (a map), got list", id="not an object"
        ),
        pytest.param(
            "foo: bar\n",
            "document 1: not a Kubernetes object (apiVersion and kind are required)",
            id="no kind",
        ),
        pytest.param(
            "apiVersion: tools.joch.dev/v1alpha1\nkind: Tool\n"
            "metadata: {name: t, namespace: n}\nspec: {type: teleport}\n",
            "document 1 (Tool t) is invalid:\n  spec.type:",
            id="fails validation",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n",
            "a Namespace needs metadata.name",
            id="namespace without name",
        ),
    ],
)
def test_unusable_input_exits_2(tmp_path: pathlib.Path, content: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    code, out, err = run("-f", str(path))
    assert (code, out) == (2, "")
    assert err.startswith(f"joch compile: error: {path}")
    assert message in err


def test_duplicates_missing_paths_and_bad_flags_exit_2(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path / "w.yaml", [*f.world(), f.tool("search")])
    assert "Tool/team-a/search is defined twice" in run("-f", str(path))[2]
    assert (
        run("-f", str(tmp_path / "nope"))[2]
        == f"joch compile: error: {tmp_path / 'nope'}: no such file or directory\n"
    )
    (tmp_path / "empty").mkdir()
    assert "no *.yaml or *.yml files" in run("-f", str(tmp_path / "empty"))[2]
    code, _, err = run("-f", str(helpers.EXAMPLES), "--namespace-labels", "support=oops")
    assert code == 2
    assert "expected NS=KEY=VALUE" in err


def test_other_kinds_are_skipped(tmp_path: pathlib.Path) -> None:
    extra = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"weird": True}},
        {
            "apiVersion": "ops.joch.dev/v1alpha1",
            "kind": "Budget",
            "metadata": {"name": "b"},
            "spec": {"bad": 1},
        },
    ]
    path = write(tmp_path / "w.yaml", [*f.world(), *extra])
    assert run("-f", str(path))[0] == 0


def test_run_uses_the_process_streams(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    compile_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compile", "-f", str(helpers.EXAMPLES)])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "---\n" + GOLDEN.read_text()


def test_bad_settings_environment_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOCH_KEEP_MANIFESTS", "lots")
    code, _, err = run("-f", str(helpers.EXAMPLES))
    assert code == 2
    assert "JOCH_KEEP_MANIFESTS must be an integer" in err


def test_settings_environment_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOCH_TRACE_URL", "http://tracing.example")
    code, out, _ = run("-f", str(helpers.EXAMPLES))
    assert code == 0
    assert "traceEndpoint: http://tracing.example\n" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"\xff\xfe\x00bad", "cannot read", id="not utf-8"),
        pytest.param(
            b"apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {a: 1}}\n",
            "Namespace x metadata.labels must map strings to strings",
            id="namespace label not a string",
        ),
        pytest.param(b"a: 'unterminated\n", "not valid YAML", id="scanner error"),
        pytest.param(b"%TAG ! tag:a\n%TAG ! tag:b\n--- x\n", "not valid YAML", id="duplicate directive"),
    ],
)
def test_more_unusable_input(tmp_path: pathlib.Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    code, _, err = run("-f", str(path))
    assert code == 2
    assert message in err


def test_many_validation_errors_are_capped(tmp_path: pathlib.Path) -> None:
    spec = {f"unknown{i}": i for i in range(30)}
    doc = {"apiVersion": "tools.joch.dev/v1alpha1", "kind": "Tool", "metadata": {"name": "t"}, "spec": spec}
    code, _, err = run("-f", str(write(tmp_path / "t.yaml", [doc])))
    assert code == 2
    assert "... and " in err
    assert len(err.splitlines()) == 22


def test_stdin_unavailable() -> None:
    parser = argparse.ArgumentParser()
    compile_cli.register(parser.add_subparsers())
    args = parser.parse_args(["compile", "-f", "-"])
    with pytest.raises(compile_cli.InputError, match="standard input is not available"):
        compile_cli.load_catalog(
            args.files, default_namespace="default", settings=OperatorSettings(), stdin=None
        )
