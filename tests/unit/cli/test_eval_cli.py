"""``joch eval run NAME`` against a scripted fake cluster (joch.cli.evals).

The Eval is read, the run's Execution POSTed (trigger eval, named ``NAME-m<random>``, owned by the Eval,
carrying dataset, metrics and thresholds), its name printed, exit 0; a missing or invalid Eval and a
refused POST exit 1 naming what went wrong; admission warnings go to stderr; an unreachable cluster
exits 2. ``--wait`` polls the Eval until ``status.runs`` has the run judged, prints each phase once, the
scores and the message: exit 0 Passed, 1 Failed or Inconclusive, 3 at ``--wait-timeout``.
"""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import Mapping
from typing import Any

import pytest

from joch.api.v1alpha1.execution import Execution
from joch.cli import evals as evals_cli
from joch.cli import main as main_cli
from joch.kube.rest import Answer, ClusterError
from tests.factories import eval_

NS = "support"
NAME = "triage-quality"
UID = "0d6c1e7e-eval"
EVAL_PATH = f"/apis/ops.joch.dev/v1alpha1/namespaces/{NS}/evals/{NAME}"
EXECUTIONS = f"/apis/runtime.joch.dev/v1alpha1/namespaces/{NS}/executions"


def stored_eval(runs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    doc = eval_(NAME, namespace=NS, phase=None)
    doc["metadata"]["uid"] = UID
    if runs is not None:
        doc["status"] = {"runs": runs}
    return doc


class FakeCluster:
    """GET the Eval answers ``evals`` in turn (the last repeats; a callable gets the posted run's name);
    POST an Execution answers ``created``."""

    def __init__(self, evals: list[Any], created: Answer | None = None) -> None:
        self.evals = list(evals)
        self.created = created
        self.calls: list[tuple[str, str, Any]] = []
        self.run: str | None = None

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Answer:
        self.calls.append((method, path, body))
        if (method, path) == ("GET", EVAL_PATH):
            scripted = self.evals.pop(0) if len(self.evals) > 1 else self.evals[0]
            answer: Answer = scripted(self.run) if callable(scripted) else scripted
            return answer
        if (method, path) == ("POST", EXECUTIONS):
            assert self.created is not None, "no POST expected"
            self.run = body["metadata"]["name"]
            return self.created
        raise AssertionError(f"unexpected {method} {path}")

    def posted(self) -> dict[str, Any]:
        bodies = [body for method, _, body in self.calls if method == "POST"]
        assert len(bodies) == 1
        body: dict[str, Any] = bodies[0]
        return body

    def gets(self) -> int:
        return sum(1 for method, _, _ in self.calls if method == "GET")


def ok(body: Any) -> Answer:
    return Answer(200, body, ())


def created_ok() -> Answer:
    return Answer(201, {"kind": "Execution"}, ())


def with_run(phase: str | None, **record: Any) -> Any:
    """An Eval answer whose status.runs holds the posted run in ``phase`` (None: not recorded yet)."""

    def answer(run: str | None) -> Answer:
        assert run is not None, "the Eval was polled before the run was created"
        runs = [] if phase is None else [{"execution": run, "trigger": "manual", "phase": phase, **record}]
        other = {"execution": f"{NAME}-s202605060000", "trigger": "schedule", "phase": "Passed"}
        return ok(stored_eval([*runs, other]))

    return answer


def parse(*argv: str) -> argparse.Namespace:
    return main_cli.build_parser().parse_args(["eval", "run", *argv])


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evals_cli, "POLL_INTERVAL", 0)


def run(fake: FakeCluster, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = evals_cli.run_eval(parse(NAME, "-n", NS, *argv), out=out, cluster=fake)
    return code, out.getvalue()


def test_the_parser_routes_to_run_eval() -> None:
    args = parse(NAME, "-n", NS, "--wait", "--wait-timeout", "30")
    assert args.handler is evals_cli.run_eval
    assert (args.name, args.namespace, args.wait, args.wait_timeout) == (NAME, NS, True, 30.0)
    assert main_cli.build_parser().parse_args(["eval", "run", NAME]).namespace == "default"


def test_run_creates_the_execution_and_prints_its_name() -> None:
    fake = FakeCluster([ok(stored_eval())], created_ok())
    code, out = run(fake)
    assert code == 0
    assert [(method, path) for method, path, _ in fake.calls] == [("GET", EVAL_PATH), ("POST", EXECUTIONS)]
    body = fake.posted()
    name = body["metadata"]["name"]
    assert re.fullmatch(rf"{NAME}-m[0-9a-f]{{6}}", name)
    assert body["metadata"]["namespace"] == NS
    assert body["metadata"]["labels"] == {"joch.dev/eval": NAME, "joch.dev/eval-trigger": "manual"}
    assert body["metadata"]["ownerReferences"][0]["kind"] == "Eval"
    assert body["metadata"]["ownerReferences"][0]["name"] == NAME
    assert body["metadata"]["ownerReferences"][0]["uid"] == UID
    assert body["spec"]["trigger"] == {"type": "eval", "sourceRef": {"name": NAME}}
    assert body["spec"]["agentRef"] == {"name": "support-triage"}
    data = body["spec"]["input"]["content"][0]["data"]
    assert data["thresholds"] == {"accuracy": 0.9, "pii_leakage": "<=0.0"}
    assert [m["name"] for m in data["metrics"]] == ["accuracy", "pii_leakage"]
    Execution.model_validate(body)
    assert out == f"Execution {NS}/{name} created (Eval {NAME}, Agent support-triage)\n"


def test_two_runs_get_different_names() -> None:
    names = set()
    for _ in range(2):
        fake = FakeCluster([ok(stored_eval())], created_ok())
        assert run(fake)[0] == 0
        names.add(fake.posted()["metadata"]["name"])
    assert len(names) == 2


def test_a_missing_eval_exits_1_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster([Answer(404, None, (), error='evals "triage-quality" not found')])
    code, out = run(fake)
    assert code == 1
    assert out == ""
    assert f"Eval {NS}/{NAME} not found" in capsys.readouterr().err
    assert [method for method, _, _ in fake.calls] == ["GET"]


def test_a_forbidden_get_exits_1_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster([Answer(403, None, (), error="evals is forbidden: User bo cannot get")])
    assert run(fake)[0] == 1
    assert f"Eval {NS}/{NAME}: evals is forbidden: User bo cannot get" in capsys.readouterr().err


def test_an_invalid_eval_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    broken = stored_eval()
    broken["spec"]["metrics"] = []
    fake = FakeCluster([ok(broken)])
    assert run(fake)[0] == 1
    assert f"Eval {NS}/{NAME} is not valid" in capsys.readouterr().err


def test_a_refused_post_exits_1_with_the_server_message(capsys: pytest.CaptureFixture[str]) -> None:
    message = 'admission webhook "executions.joch.dev" denied the request: Agent support-triage is paused'
    fake = FakeCluster([ok(stored_eval())], Answer(403, None, (), error=message))
    code, out = run(fake)
    assert code == 1
    assert out == ""
    err = capsys.readouterr().err
    assert f"the API server refused the run of Eval {NS}/{NAME}: {message}" in err


def test_admission_warnings_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster([ok(stored_eval())], Answer(201, {}, ("Budget support-monthly is 90% used",)))
    assert run(fake)[0] == 0
    assert "Warning: Budget support-monthly is 90% used" in capsys.readouterr().err


def test_an_unreachable_cluster_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    class Down:
        def call(self, method: str, path: str, **_: Any) -> Answer:
            raise ClusterError("cannot reach https://10.0.0.1:6443: refused")

    code = evals_cli.run_eval(parse(NAME, "-n", NS), out=io.StringIO(), cluster=Down())
    assert code == 2
    assert "cannot reach https://10.0.0.1:6443" in capsys.readouterr().err


def test_wait_follows_the_run_until_it_passes() -> None:
    fake = FakeCluster(
        [
            ok(stored_eval()),
            with_run(None),
            with_run("Running"),
            with_run("Running"),
            with_run(
                "Passed",
                scores={"accuracy": 0.93, "pii_leakage": 0.0},
                message="every threshold met (accuracy 0.93, pii_leakage 0)",
            ),
        ],
        created_ok(),
    )
    code, out = run(fake, "--wait")
    assert code == 0
    run_name = fake.posted()["metadata"]["name"]
    assert out.splitlines() == [
        f"Execution {NS}/{run_name} created (Eval {NAME}, Agent support-triage)",
        f"run {run_name}: Pending",
        f"run {run_name}: Running",
        f"run {run_name}: Passed",
        "  accuracy: 0.93",
        "  pii_leakage: 0",
        "  every threshold met (accuracy 0.93, pii_leakage 0)",
    ]
    assert fake.gets() == 5


def test_wait_exits_1_when_the_run_failed() -> None:
    message = "metric accuracy scored 0.5, which misses its threshold >=0.9"
    fake = FakeCluster(
        [
            ok(stored_eval()),
            with_run(
                "Failed",
                scores={"accuracy": 0.5, "pii_leakage": 0.0},
                failures=[{"metric": "accuracy", "threshold": ">=0.9", "value": 0.5}],
                message=message,
            ),
        ],
        created_ok(),
    )
    code, out = run(fake, "--wait")
    assert code == 1
    lines = out.splitlines()
    assert lines[1].endswith(": Failed")
    assert lines[2:] == ["  accuracy: 0.5", "  pii_leakage: 0", f"  {message}"]


def test_wait_exits_1_when_the_run_is_inconclusive() -> None:
    fake = FakeCluster(
        [ok(stored_eval()), with_run("Inconclusive", message="Execution x ended Failed: OOMKilled")],
        created_ok(),
    )
    code, out = run(fake, "--wait")
    assert code == 1
    assert out.splitlines()[-1] == "  Execution x ended Failed: OOMKilled"


def test_wait_timeout_exits_3_and_the_run_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster([ok(stored_eval()), with_run("Running")], created_ok())
    code, out = run(fake, "--wait", "--wait-timeout", "0.05")
    assert code == 3
    run_name = fake.posted()["metadata"]["name"]
    assert out.splitlines()[1:] == [f"run {run_name}: Running"]  # printed once however often polled
    err = capsys.readouterr().err
    assert f"run {run_name} of Eval {NS}/{NAME} is still Running after --wait-timeout 0.05s" in err
    assert "goes on" in err
    assert [method for method, _, _ in fake.calls].count("POST") == 1


def test_the_eval_deleted_while_waiting_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster(
        [ok(stored_eval()), with_run("Running"), Answer(404, None, (), error="gone")], created_ok()
    )
    code, _ = run(fake, "--wait")
    assert code == 1
    assert f"Eval {NS}/{NAME} not found" in capsys.readouterr().err
