"""`joch agbom -f DIR` and `joch agbom diff --from-file A --to-file B`, through the real argument parser."""

from __future__ import annotations

import io
import json
import pathlib

import pytest
import yaml

from joch.cli import agbom as agbom_cli
from joch.cli.main import main
from joch.domain import agbom
from tests.unit.agbom import fleet

TS = "2026-05-05T05:05:05Z"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_examples_fleet(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["agbom", "-f", str(fleet.EXAMPLES), "--timestamp", TS], capsys)
    assert code == 0, err
    fleet.assert_valid(out)
    doc = json.loads(out)
    assert doc["metadata"]["timestamp"] == TS
    assert doc["version"] == 1
    uid = agbom.agent_uid_for("support", "support-triage")
    assert doc["serialNumber"] == agbom.serial_number(uid)
    assert doc["metadata"]["component"]["bom-ref"] == uid
    assert "Traceback" not in err


def test_default_timestamp_and_output_dir(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, printed, _ = _run(["agbom", "-f", str(fleet.EXAMPLES)], capsys)
    assert code == 0
    assert json.loads(printed)["metadata"]["timestamp"] == agbom_cli.EPOCH
    code, out, err = _run(["agbom", "-f", str(fleet.EXAMPLES), "-o", str(tmp_path / "out")], capsys)
    assert code == 0
    assert out == ""
    written = tmp_path / "out" / "support.support-triage.cdx.json"
    assert written.read_text(encoding="utf-8") == printed
    assert str(written) in err


def test_secrets_flag(capsys: pytest.CaptureFixture[str]) -> None:
    _, without, _ = _run(["agbom", "-f", str(fleet.EXAMPLES)], capsys)
    assert "openai-api-key" not in without
    _, with_secrets, _ = _run(["agbom", "-f", str(fleet.EXAMPLES), "--secrets"], capsys)
    assert "secret:support/openai-api-key" in with_secrets


def _write_fleet(path: pathlib.Path, objects: list[object]) -> pathlib.Path:
    path.write_text(yaml.safe_dump_all([o.wire() for o in objects]), encoding="utf-8")  # type: ignore[attr-defined]
    return path


def test_problems_exit_1_and_still_print(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    objects = [o for o in fleet.world() if (o.kind, o.metadata.name) != ("KnowledgeSource", "handbook")]
    objects = [o for o in objects if (o.kind, o.metadata.name) != ("Tool", "search")]
    objects.append(fleet.tool("search", "code_execution", approval=False))
    source = _write_fleet(tmp_path / "fleet.yaml", objects)
    code, out, err = _run(["agbom", "-f", str(source)], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["compositions"][0]["aggregate"] == "incomplete"
    assert "KnowledgeSource team-a/handbook not found" in err
    assert "high risk: Tool team-a/search: code_execution side effects without approval" in err
    assert "1 of 1 agent(s) have problems" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["agbom"], "-f/--filename is required"),
        (["agbom", "-f", "/nonexistent/fleet"], "no such file or directory"),
        (["agbom", "-f", str(fleet.EXAMPLES), "--agent", "nobody"], "no Agent nobody"),
    ],
)
def test_unusable_input_exits_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_bad_yaml_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n", encoding="utf-8")
    code, _, err = _run(["agbom", "-f", str(bad)], capsys)
    assert code == 2
    assert "not valid YAML" in err


def test_diff_files(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.json"
    new = tmp_path / "new.json"
    old.write_text(fleet.render(fleet.content(fleet.world())), encoding="utf-8")
    objects = [o for o in fleet.world() if o.kind != "Model" or o.metadata.name != "big"]
    new.write_text(
        fleet.render(fleet.content([*objects, fleet.model("big", model_id="big-2")])), encoding="utf-8"
    )
    code, out, err = _run(["agbom", "diff", "--from-file", str(old), "--to-file", str(new)], capsys)
    assert code == 0, err
    assert out == "~ Model openai:big version: big -> big-2\n"
    code, out, _ = _run(["agbom", "diff", "--from-file", str(old), "--to-file", str(old)], capsys)
    assert (code, out) == (0, "")


def test_diff_unreadable_exits_2(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"components": []}), encoding="utf-8")
    for other in (bad, good, tmp_path / "absent.json"):
        code, out, err = _run(["agbom", "diff", "--from-file", str(other), "--to-file", str(other)], capsys)
        assert code == 2
        assert out == ""
        assert "joch agbom diff: error:" in err


def test_print_diff_counts() -> None:
    out = io.StringIO()
    old = fleet.document(fleet.content(fleet.world()))
    assert agbom_cli.print_diff(old, old, out) == 0
    assert out.getvalue() == ""


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["agbom", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "CycloneDX 1.6" in out
    assert "--timestamp" in out
    assert "diff" in out
