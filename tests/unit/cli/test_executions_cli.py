"""`joch run` and `joch executions ls | get | cancel` against a scripted fake cluster (joch.cli.executions).

run: the Execution POSTed for --input JSON (object, string), -f YAML (a mapping, a content list, stdin,
dates), --name and --timeout; unusable input exits 2 naming the flag, before any call; a refused POST
exits 1 with the webhook's message. Following: each phase printed once off a terminal, a live line with
\\r on one; the summary; exit 0 Succeeded, 1 Failed / Cancelled / TimedOut, 3 at --wait-timeout, 130 on
Ctrl-C (with the cancel command, nothing cancelled), 1 when deleted meanwhile; -o json on stdout with
progress on stderr; --no-follow. ls: --agent filtered client side, header, oldest first, -A, pagination,
none found, -o json. get: 404, the row and details. cancel: the merge patch, terminal ones skipped, 404.
Cluster.call sends the content type asked for. The duration and age formats; main registers both.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import types
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from joch.cli import executions as executions_cli
from joch.cli import main as main_cli
from joch.kube.rest import APPLY_PATCH, Answer, Cluster

NS = "default"
COLLECTION = "/apis/runtime.joch.dev/v1alpha1/namespaces/default/executions"
NAME = "summarize-x7k2p"
OBJECT = f"{COLLECTION}/{NAME}"
NOW = datetime.datetime(2025, 1, 1, 0, 10, tzinfo=datetime.UTC)


def answer(body: Any = None, status: int = 200, error: str | None = None) -> Answer:
    return Answer(status, body, (), error)


def execution(
    name: str = NAME,
    phase: str | None = None,
    *,
    agent: str = "summarize",
    namespace: str = NS,
    created: str = "2025-01-01T00:00:00Z",
    **status: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"agentRef": {"name": agent}, "trigger": {"type": "manual"}},
    }
    if phase is not None or status:
        document["status"] = {**({"phase": phase} if phase else {}), **status}
    return document


Call = tuple[str, str, dict[str, str] | None, Any, str | None]


class FakeCluster:
    """Answers by (method, path): a list is a script (its last answer repeats), a callable raises."""

    def __init__(self, routes: Mapping[tuple[str, str], list[Answer] | Callable[[], Answer]]) -> None:
        self.routes = dict(routes)
        self.calls: list[Call] = []

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Answer:
        self.calls.append((method, path, dict(query) if query is not None else None, body, content_type))
        route = self.routes.get((method, path))
        if route is None:
            raise AssertionError(f"unexpected {method} {path}")
        if callable(route):
            return route()
        return route.pop(0) if len(route) > 1 else route[0]

    def methods(self) -> list[str]:
        return [call[0] for call in self.calls]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executions_cli, "POLL_INTERVAL", 0.0)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="joch")
    executions_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def scripted(*phases: str | None, **final_status: Any) -> FakeCluster:
    """POST answers the created Execution; GETs walk through ``phases`` (the last one with final_status)."""
    gets = [answer(execution(phase=phase)) for phase in phases[:-1]]
    gets.append(answer(execution(phase=phases[-1], **final_status)))
    return FakeCluster({("POST", COLLECTION): [answer(execution())], ("GET", OBJECT): gets})


def posted(fake: FakeCluster, collection: str = COLLECTION) -> Any:
    method, path, _, body, _ = fake.calls[0]
    assert (method, path) == ("POST", collection)
    return body


# --- the Execution created -------------------------------------------------------------------------------


def test_input_json_object_is_one_data_part() -> None:
    fake = scripted("Pending")
    out = io.StringIO()
    args = parse("run", "summarize", "--input", '{"ticket": 42, "lang": "en"}', "--no-follow")
    assert executions_cli.run_run(args, out=out, cluster=fake) == 0
    assert posted(fake) == {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Execution",
        "metadata": {"generateName": "summarize-", "namespace": "default"},
        "spec": {
            "agentRef": {"name": "summarize"},
            "trigger": {"type": "manual"},
            "input": {"content": [{"kind": "data", "data": {"ticket": 42, "lang": "en"}}]},
        },
    }
    assert fake.methods() == ["POST"]
    assert out.getvalue() == f"Execution default/{NAME} created\n"


def test_input_json_string_is_one_text_part_with_name_namespace_and_timeout() -> None:
    path = "/apis/runtime.joch.dev/v1alpha1/namespaces/support/executions"
    fake = FakeCluster({("POST", path): [answer(execution("mine", namespace="support"))]})
    args = parse(
        "run",
        "summarize",
        "-n",
        "support",
        "--input",
        '"summarize ticket 42"',
        "--name",
        "mine",
        "--timeout",
        "600",
        "--no-follow",
    )
    assert executions_cli.run_run(args, out=io.StringIO(), cluster=fake) == 0
    body = posted(fake, path)
    assert body["metadata"] == {"name": "mine", "namespace": "support"}
    assert body["spec"]["input"] == {"content": [{"kind": "text", "text": "summarize ticket 42"}]}
    assert body["spec"]["timeoutSeconds"] == 600


def test_no_input_sends_no_spec_input() -> None:
    fake = scripted("Pending")
    assert executions_cli.run_run(parse("run", "summarize", "--no-follow"), cluster=fake) == 0
    assert "input" not in posted(fake)["spec"]


def test_yaml_file_mapping_is_one_data_part(tmp_path: Any) -> None:
    source = tmp_path / "input.yaml"
    source.write_text("ticket: 42\ndue: 2025-02-03\ntags: [billing, urgent]\n")
    fake = scripted("Pending")
    args = parse("run", "summarize", "-f", str(source), "--no-follow")
    assert executions_cli.run_run(args, out=io.StringIO(), cluster=fake) == 0
    assert posted(fake)["spec"]["input"] == {
        "content": [
            {"kind": "data", "data": {"ticket": 42, "due": "2025-02-03", "tags": ["billing", "urgent"]}}
        ]
    }


def test_yaml_content_list_is_spec_input_as_is_and_stdin_is_read() -> None:
    content = {
        "content": [
            {"kind": "text", "text": "Summarize the attached file."},
            {"kind": "file", "uri": "artifact://support/tickets/42.pdf", "mimeType": "application/pdf"},
        ]
    }
    fake = scripted("Pending")
    args = parse("run", "summarize", "-f", "-", "--no-follow")
    stdin = io.StringIO(yaml.safe_dump(content))
    assert executions_cli.run_run(args, out=io.StringIO(), cluster=fake, stdin=stdin) == 0
    assert posted(fake)["spec"]["input"] == content


@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        (["--input", "{not json"], "", "joch run: error: --input is not valid JSON: "),
        (["--input", "[1, 2]"], "", "joch run: error: --input: expected an object"),
        (["--input", "NaN"], "", "joch run: error: --input: expected an object"),
        (["-f", "-"], "ticket: [42\n", "joch run: error: -f - is not valid YAML (line 2, column 1): "),
        (["-f", "-"], "", "joch run: error: -f -: expected an object (sent as a data part) or a string"),
        (["-f", "-"], "- 1\n- 2\n", "not a list"),
        (["-f", "/nonexistent/input.yaml"], "", "joch run: error: -f /nonexistent/input.yaml: cannot read"),
    ],
)
def test_unusable_input_exits_2_naming_the_flag_before_any_call(
    argv: list[str], stdin: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCluster({})
    args = parse("run", "summarize", *argv)
    assert executions_cli.run_run(args, out=io.StringIO(), cluster=fake, stdin=io.StringIO(stdin)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert fake.calls == []


def test_input_and_file_are_exclusive_and_timeout_is_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse("run", "summarize", "--input", "{}", "-f", "x.yaml")
    assert raised.value.code == 2
    with pytest.raises(SystemExit):
        parse("run", "summarize", "--timeout", "604801")
    assert "at most 604800" in capsys.readouterr().err


def test_refused_post_prints_the_webhook_message_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    denial = (
        'admission webhook "executions.runtime.joch.dev" denied the request: spec.agentRef: '
        "Agent default/nope does not exist"
    )
    fake = FakeCluster({("POST", COLLECTION): [answer(status=403, error=denial)]})
    out = io.StringIO()
    assert executions_cli.run_run(parse("run", "nope"), out=out, cluster=fake) == 1
    err = capsys.readouterr().err
    assert err.startswith("joch run: error: the API server refused the Execution of Agent default/nope: ")
    assert denial in err
    assert fake.methods() == ["POST"]
    assert out.getvalue() == ""


# --- following -------------------------------------------------------------------------------------------


def phase_lines(text: str) -> list[str]:
    return [
        line.split(": ", 1)[1].split(" (")[0] for line in text.splitlines() if line.startswith("execution ")
    ]


def test_succeeded_prints_each_phase_once_then_the_summary() -> None:
    fake = scripted(
        None,
        "Pending",
        "Queued",
        "Queued",
        "Running",
        "Running",
        "Running",
        "Succeeded",
        durationMs=12345,
        costUsd=0.0123,
        tokens=2048,
        modelCalls=3,
        toolCalls=5,
        manifestRef={"name": "summarize-manifest", "sha256": "ab" * 32},
        abomSnapshotRef={"name": "summarize", "generation": 4},
        conditions=[{"type": "Ready", "status": "True", "reason": "Succeeded", "message": "done"}],
    )
    out = io.StringIO()
    assert executions_cli.run_run(parse("run", "summarize", "--input", "{}"), out=out, cluster=fake) == 0
    text = out.getvalue()
    assert phase_lines(text) == ["Pending", "Queued", "Running", "Succeeded"]
    assert "\r" not in text
    assert fake.methods() == ["POST"] + ["GET"] * 8
    summary = text.split("execution summarize-x7k2p: Succeeded")[1]
    assert "Execution: default/summarize-x7k2p" in summary
    assert "Agent:     summarize" in summary
    assert "Phase:     Succeeded" in summary
    assert "Duration:  12.3s" in summary
    assert "Cost:      0.0123 USD" in summary
    assert "Tokens:    2048" in summary
    assert "Calls:     3 model, 5 tool" in summary
    assert "Manifest:  summarize-manifest (sha256 abababababab)" in summary
    assert "AgBOM:     summarize (generation 4)" in summary
    assert "Reason" not in summary


@pytest.mark.parametrize(
    ("phase", "reason", "message"),
    [
        ("Failed", "JobFailed", "the agent exited with status 1"),
        ("TimedOut", "DeadlineExceeded", "ran past spec.timeoutSeconds (600s)"),
        ("Cancelled", "Cancelled", "spec.cancel was set"),
    ],
)
def test_unsuccessful_ends_exit_1_with_the_ready_reason(phase: str, reason: str, message: str) -> None:
    ready = {"type": "Ready", "status": "False", "reason": reason, "message": message}
    fake = scripted("Running", phase, conditions=[ready], startedAt="2025-01-01T00:00:00Z")
    out = io.StringIO()
    assert executions_cli.run_run(parse("run", "summarize"), out=out, cluster=fake) == 1
    text = out.getvalue()
    assert phase_lines(text) == ["Running", phase]
    assert f"Phase:     {phase}" in text
    assert f"Reason:    {reason}: {message}" in text
    assert "Duration:  -" in text
    assert "Cost:      -" in text


def test_a_terminal_gets_one_live_line() -> None:
    fake = scripted("Pending", "Running", "Running", "Succeeded", durationMs=900)
    out = Terminal()
    assert executions_cli.run_run(parse("run", "summarize"), out=out, cluster=fake) == 0
    text = out.getvalue()
    live, _, summary = text.partition("\n")
    assert live.startswith("\rexecution summarize-x7k2p: Pending (")
    assert live.count("\r") == 4
    assert live.rsplit("\r", 1)[1].startswith("execution summarize-x7k2p: Succeeded (")
    assert "Duration:  900ms" in summary


def test_json_output_is_the_final_object_and_progress_goes_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = scripted("Running", "Succeeded", costUsd=0.5)
    out = io.StringIO()
    assert executions_cli.run_run(parse("run", "summarize", "-o", "json"), out=out, cluster=fake) == 0
    assert json.loads(out.getvalue()) == execution(phase="Succeeded", costUsd=0.5)
    assert phase_lines(capsys.readouterr().err) == ["Running", "Succeeded"]


def test_yaml_output_of_no_follow_is_the_created_object() -> None:
    fake = scripted("Pending")
    out = io.StringIO()
    assert (
        executions_cli.run_run(parse("run", "summarize", "-o", "yaml", "--no-follow"), out=out, cluster=fake)
        == 0
    )
    assert yaml.safe_load(out.getvalue()) == execution()


def test_wait_timeout_exits_3_and_leaves_the_run_alone(capsys: pytest.CaptureFixture[str]) -> None:
    fake = scripted("Running")
    args = parse("run", "summarize", "--wait-timeout", "0.01")
    assert executions_cli.run_run(args, out=io.StringIO(), cluster=fake) == 3
    err = capsys.readouterr().err
    assert "joch run: error: Execution default/summarize-x7k2p is still Running after --wait-timeout" in err
    assert set(fake.methods()) == {"POST", "GET"}


def test_ctrl_c_prints_how_to_cancel_and_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    gets = [answer(execution(phase="Running"))]

    def get() -> Answer:
        if gets:
            return gets.pop()
        raise KeyboardInterrupt

    fake = FakeCluster({("POST", COLLECTION): [answer(execution())], ("GET", OBJECT): get})
    out = io.StringIO()
    assert executions_cli.run_run(parse("run", "summarize"), out=out, cluster=fake) == 130
    assert phase_lines(out.getvalue()) == ["Running"]
    assert "joch executions cancel summarize-x7k2p -n default" in capsys.readouterr().err
    assert "PATCH" not in fake.methods()


def test_deleted_while_followed_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster(
        {
            ("POST", COLLECTION): [answer(execution())],
            ("GET", OBJECT): [answer(execution(phase="Running")), answer(status=404, error="not found")],
        }
    )
    assert executions_cli.run_run(parse("run", "summarize"), out=io.StringIO(), cluster=fake) == 1
    assert "Execution default/summarize-x7k2p was deleted before it ended" in capsys.readouterr().err


# --- ls / get / cancel -----------------------------------------------------------------------------------


def listing(*items: dict[str, Any], token: str = "") -> Answer:
    return answer({"kind": "ExecutionList", "metadata": {"continue": token}, "items": list(items)})


def test_ls_filters_by_agent_client_side_oldest_first() -> None:
    items = [
        execution("summarize-b", "Running", created="2025-01-01T00:05:00Z", startedAt="2025-01-01T00:06:00Z"),
        execution("triage-a", "Succeeded", agent="triage", created="2025-01-01T00:01:00Z"),
        execution(
            "summarize-a", "Succeeded", created="2025-01-01T00:00:00Z", durationMs=184000, costUsd=0.0123
        ),
    ]
    fake = FakeCluster({("GET", COLLECTION): [listing(*items)]})
    out = io.StringIO()
    args = parse("executions", "ls", "--agent", "summarize")
    assert executions_cli.run_ls(args, out=out, cluster=fake, now=NOW) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAME", "AGENT", "PHASE", "COST", "DURATION", "AGE"]
    assert lines[1].split() == ["summarize-a", "summarize", "Succeeded", "0.0123", "3m4s", "10m"]
    assert lines[2].split() == ["summarize-b", "summarize", "Running", "4m0s", "5m"]
    assert len(lines) == 3
    assert lines[0].index("DURATION") == lines[1].index("3m4s")
    assert fake.calls[0][2] == {"limit": "500"}


def test_ls_all_namespaces_adds_the_column_and_follows_continue() -> None:
    path = "/apis/runtime.joch.dev/v1alpha1/executions"
    fake = FakeCluster(
        {
            ("GET", path): [
                listing(
                    execution("b", "Queued", namespace="ops", created="2025-01-01T00:09:00Z"), token="t1"
                ),
                listing(execution("a", "Failed", namespace="support", created="2025-01-01T00:08:00Z")),
            ]
        }
    )
    out = io.StringIO()
    assert executions_cli.run_ls(parse("executions", "ls", "-A"), out=out, cluster=fake, now=NOW) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "AGENT", "PHASE", "COST", "DURATION", "AGE"]
    assert [line.split()[:2] for line in lines[1:]] == [["support", "a"], ["ops", "b"]]
    assert [call[2] for call in fake.calls] == [{"limit": "500"}, {"limit": "500", "continue": "t1"}]


def test_ls_none_found_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", COLLECTION): [listing(execution("triage-a", agent="triage"))]})
    out = io.StringIO()
    assert (
        executions_cli.run_ls(parse("executions", "ls", "--agent", "summarize"), out=out, cluster=fake) == 0
    )
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "No Executions of Agent summarize found in namespace default.\n"
    out = io.StringIO()
    assert executions_cli.run_ls(parse("executions", "ls", "-o", "json"), out=out, cluster=fake) == 0
    assert [item["metadata"]["name"] for item in json.loads(out.getvalue())["items"]] == ["triage-a"]


def test_ls_refused_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", COLLECTION): [answer(status=403, error="executions is forbidden")]})
    assert executions_cli.run_ls(parse("executions", "ls"), out=io.StringIO(), cluster=fake) == 1
    assert (
        capsys.readouterr().err
        == "joch executions ls: error: cannot list Executions: executions is forbidden\n"
    )


def test_get_not_found(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", f"{COLLECTION}/nope"): [answer(status=404, error="not found")]})
    out = io.StringIO()
    assert executions_cli.run_get(parse("executions", "get", "nope"), out=out, cluster=fake) == 1
    assert capsys.readouterr().err == "joch executions get: error: Execution default/nope not found\n"
    assert out.getvalue() == ""


def test_get_prints_the_row_and_the_details() -> None:
    failed = execution(
        phase="Failed",
        durationMs=1200,
        tokens=10,
        podName="summarize-x7k2p-abcde",
        conditions=[{"type": "Ready", "status": "False", "reason": "JobFailed", "message": "exit 1"}],
    )
    fake = FakeCluster({("GET", OBJECT): [answer(failed)]})
    out = io.StringIO()
    assert executions_cli.run_get(parse("executions", "get", NAME), out=out, cluster=fake, now=NOW) == 0
    header, row, blank, *details = out.getvalue().splitlines()
    assert header.split() == ["NAME", "AGENT", "PHASE", "COST", "DURATION", "AGE"]
    assert row.split() == [NAME, "summarize", "Failed", "1.2s", "10m"]
    assert blank == ""
    assert details == ["Reason: JobFailed: exit 1", "Tokens: 10", "Pod:    summarize-x7k2p-abcde"]


def test_cancel_sends_the_merge_patch() -> None:
    fake = FakeCluster(
        {("GET", OBJECT): [answer(execution(phase="Running"))], ("PATCH", OBJECT): [answer(execution())]}
    )
    out = io.StringIO()
    assert executions_cli.run_cancel(parse("executions", "cancel", NAME), out=out, cluster=fake) == 0
    assert fake.calls[1] == (
        "PATCH",
        OBJECT,
        None,
        {"spec": {"cancel": True}},
        "application/merge-patch+json",
    )
    assert out.getvalue() == "Execution default/summarize-x7k2p: cancel requested\n"


@pytest.mark.parametrize("phase", sorted(executions_cli.TERMINAL_PHASES))
def test_cancel_skips_ended_runs(phase: str) -> None:
    fake = FakeCluster({("GET", OBJECT): [answer(execution(phase=phase))]})
    out = io.StringIO()
    assert executions_cli.run_cancel(parse("executions", "cancel", NAME), out=out, cluster=fake) == 0
    assert fake.methods() == ["GET"]
    assert out.getvalue() == f"Execution default/summarize-x7k2p already ended ({phase})\n"


def test_cancel_not_found_and_refused(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", OBJECT): [answer(status=404, error="not found")]})
    assert executions_cli.run_cancel(parse("executions", "cancel", NAME), cluster=fake) == 1
    assert (
        capsys.readouterr().err
        == "joch executions cancel: error: Execution default/summarize-x7k2p not found\n"
    )
    fake = FakeCluster(
        {
            ("GET", OBJECT): [answer(execution(phase="Queued"))],
            ("PATCH", OBJECT): [answer(status=403, error="patch is forbidden")],
        }
    )
    assert (
        executions_cli.run_cancel(parse("executions", "cancel", NAME), out=io.StringIO(), cluster=fake) == 1
    )
    assert "patch is forbidden" in capsys.readouterr().err


# --- pieces ----------------------------------------------------------------------------------------------


class _Response:
    status = 200
    data = b"{}"
    headers: dict[str, str] = {}


class _Api:
    configuration = types.SimpleNamespace(host="https://cluster.test")

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def call_api(self, path: str, method: str, **kwargs: Any) -> _Response:
        self.headers.append(kwargs["header_params"])
        return _Response()


def test_cluster_call_sends_the_content_type_asked_for() -> None:
    api = _Api()
    cluster = Cluster(api)
    cluster.call("PATCH", OBJECT, body={"spec": {"cancel": True}}, content_type=executions_cli.MERGE_PATCH)
    cluster.call("PATCH", OBJECT, body={})
    cluster.call("POST", COLLECTION, body={})
    assert [headers["Content-Type"] for headers in api.headers] == [
        "application/merge-patch+json",
        APPLY_PATCH,
        "application/json",
    ]


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (450, "450ms"),
        (1234, "1.2s"),
        (59_960, "1m0s"),
        (184_000, "3m4s"),
        (7_500_000, "2h5m"),
        (3 * 86_400_000, "3d0h"),
    ],
)
def test_format_duration(milliseconds: float, text: str) -> None:
    assert executions_cli.format_duration(milliseconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(-3, "0s"), (45, "45s"), (600, "10m"), (18_000, "5h"), (259_200, "3d")]
)
def test_format_age(seconds: float, text: str) -> None:
    assert executions_cli.format_age(seconds) == text


def test_main_registers_run_and_executions() -> None:
    parser = main_cli.build_parser()
    assert parser.parse_args(["run", "summarize"]).handler is executions_cli.run_run
    assert parser.parse_args(["executions", "ls", "-A"]).handler is executions_cli.run_ls
    assert parser.parse_args(["executions", "get", "x"]).handler is executions_cli.run_get
    assert parser.parse_args(["executions", "cancel", "x"]).handler is executions_cli.run_cancel
