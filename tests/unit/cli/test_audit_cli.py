"""``joch audit verify FILE`` (joch.cli.audit): exit 0 intact, 1 problems or no chain, 2 unreadable."""

from __future__ import annotations

import datetime
import io
import json
import pathlib
import subprocess
import sys

import pytest

from joch import audit
from joch.cli import audit as audit_cli
from joch.cli import main
from joch.domain import audit as records

WHEN = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def written(path: pathlib.Path, count: int, *, hash_chain: bool = True) -> list[str]:
    log = audit.GovernanceLog.open(str(path), hash_chain=hash_chain)
    for index in range(count):
        log.record(
            "admission_denial",
            actor=records.Actor("alice"),
            resource=records.Resource("joch.ai/v1alpha1", "Agent", f"a{index}", "ns"),
            decision="deny",
            reason="denied",
            time=WHEN,
        )
    log.close()
    return path.read_text(encoding="utf-8").splitlines()


def verify(path: pathlib.Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = audit_cli.verify_file(str(path), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_an_intact_chain_exits_0(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    written(path, 4)
    assert verify(path) == (0, f"{path}: 4 records, hash chain intact\n", "")


def test_problems_exit_1_one_line_each(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = written(path, 8)
    changed = json.loads(lines[6])
    changed["message"] = "allowed"
    lines[6] = records.canonical(changed)
    del lines[2]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out, err = verify(path)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "line 3: sequence gap: record 3 is missing before sequence 4 (removed)",
        "line 6: hash mismatch: the record was changed",
        f"{path}: 7 records, 2 problems",
    ]


def test_a_file_without_the_chain_exits_1(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    written(path, 2, hash_chain=False)
    code, out, _ = verify(path)
    assert code == 1
    assert "none hash-chained" in out
    assert "nothing to verify" in out


def test_a_missing_file_exits_2_without_a_traceback(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "joch.cli.main", "audit", "verify", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == f"joch audit verify: cannot read {missing}: No such file or directory\n"
    assert result.stdout == ""


def test_the_command_is_registered(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "audit.jsonl"
    written(path, 1)
    assert main.main(["audit", "verify", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: 1 records, hash chain intact\n"
