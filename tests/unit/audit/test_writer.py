"""The audit log writer (joch.audit): JSON lines, the chain resumed across a reopened file, a failed
write logged once and survived, the null log."""

from __future__ import annotations

import datetime
import io
import json
import logging
import pathlib
import threading

import pytest

from joch import audit
from joch.domain import audit as records

WHEN = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)
ALICE = records.Actor("alice", ("dev",))
APPROVAL = records.Resource("joch.ai/v1alpha1", "Approval", "promote-1", "ns", "u-1")


def write(log: audit.GovernanceLog | audit.NullLog, count: int = 1) -> None:
    for index in range(count):
        log.record(
            "approval_decision",
            actor=ALICE,
            resource=APPROVAL,
            decision="approve",
            reason=f"approved {index}",
            time=WHEN,
        )


def read(path: pathlib.Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_a_stream_gets_one_canonical_line_per_record() -> None:
    stream = io.StringIO()
    log = audit.GovernanceLog(stream, clock=lambda: WHEN)
    write(log, 2)
    log.record("promotion", actor=ALICE, resource=APPROVAL, decision="allow", reason="now")
    out = stream.getvalue().splitlines()
    assert len(out) == 3
    assert log.written == 3
    first = json.loads(out[0])
    assert out[0] == records.canonical(first)
    assert "hash" not in first
    assert "sequence" not in first["metadata"]
    assert first["metadata"]["product"]["version"]  # joch's version
    assert json.loads(out[2])["time_dt"] == "2026-11-27T12:00:00.000Z"  # the log's clock


def test_the_chain_resumes_in_a_reopened_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = audit.GovernanceLog.open(str(path), hash_chain=True)
    write(log, 3)
    log.close()
    again = audit.GovernanceLog.open(str(path), hash_chain=True)
    assert again.chain.sequence == 3
    write(again, 2)
    again.close()
    lines = read(path)
    assert [json.loads(line)["metadata"]["sequence"] for line in lines] == [1, 2, 3, 4, 5]
    assert records.verify(lines) == []


def test_a_half_written_last_line_is_ended_and_skipped(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = audit.GovernanceLog.open(str(path), hash_chain=True)
    write(log, 2)
    log.close()
    with path.open("a", encoding="utf-8") as stream:
        stream.write('{"time": 17')  # the crash
    again = audit.GovernanceLog.open(str(path), hash_chain=True)
    write(again)
    again.close()
    lines = read(path)
    assert len(lines) == 4
    assert [(p.line, p.code) for p in records.verify(lines)] == [(3, "unparsable")]


def test_a_long_file_resumes_from_its_tail(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = audit.GovernanceLog.open(str(path), hash_chain=True)
    write(log, 300)  # > one 64 KiB chunk
    log.close()
    assert path.stat().st_size > 64 * 1024
    again = audit.GovernanceLog.open(str(path), hash_chain=True)
    again.close()
    assert again.chain.sequence == 300


def test_an_unopenable_path_raises(tmp_path: pathlib.Path) -> None:
    with pytest.raises(audit.AuditLogError, match="cannot open the audit log"):
        audit.GovernanceLog.open(str(tmp_path / "missing" / "audit.jsonl"))


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_failed_write_is_logged_once_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    log = audit.GovernanceLog(Broken(), hash_chain=True)
    with caplog.at_level(logging.ERROR, logger="joch.audit"):
        write(log, 3)
    assert log.dropped == 3
    assert log.written == 0
    assert [r.message for r in caplog.records if "cannot write" in r.message] == [
        "cannot write the audit log the audit stream (records are dropped): "
        "[Errno 28] No space left on device"
    ]


def test_writes_from_threads_keep_the_chain(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = audit.GovernanceLog.open(str(path), hash_chain=True)
    threads = [threading.Thread(target=write, args=(log, 25)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    lines = read(path)
    assert len(lines) == 200
    assert records.verify(lines) == []


def test_open_log_disabled_stdout_or_file(tmp_path: pathlib.Path) -> None:
    assert audit.open_log(None) is audit.NULL
    assert audit.open_log("") is audit.NULL
    assert not audit.NULL.enabled
    write(audit.NULL)  # writes nothing, raises nothing
    audit.NULL.close()
    stdout = audit.open_log("-", hash_chain=True)
    assert isinstance(stdout, audit.GovernanceLog)
    assert stdout.hash_chain
    assert stdout.name == "stdout"
    opened = audit.open_log(str(tmp_path / "a.jsonl"))
    assert isinstance(opened, audit.GovernanceLog)
    assert opened.enabled
    opened.close()
