"""`joch approvals ls | get | decide | override | acknowledge` against a scripted fake cluster
(joch.cli.approvals).

ls: the header, AGENT (agentRef, else executionRef, else the joch.dev/deployment label of a promotion,
else -), TOOL and RISK (- when unset), DECIDED BY, EXPIRES (in 4m, overdue, - once decided or unset),
oldest first, --pending (Pending or no phase), -A, pagination, none found, -o json, refused. get: the
description of a pending and of an overridden Approval, 404, -o yaml. decide / override / acknowledge:
the exact merge patch of the status subresource (never who or when), the success line naming the user
the server stamped, reject without a rationale exits 2 before any call, admission refusals (403, 400,
422) print the server's message and exit 1, 404, warnings. main registers the group.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
from collections.abc import Mapping
from typing import Any

import pytest
import yaml

from joch.cli import approvals as approvals_cli
from joch.cli import main as main_cli
from joch.kube.rest import Answer

NS = "default"
COLLECTION = "/apis/runtime.joch.dev/v1alpha1/namespaces/default/approvals"
NAME = "refund-4711-x2k9"
OBJECT = f"{COLLECTION}/{NAME}"
STATUS = f"{OBJECT}/status"
MERGE_PATCH = "application/merge-patch+json"
NOW = datetime.datetime(2025, 1, 1, 0, 10, tzinfo=datetime.UTC)


def answer(
    body: Any = None, status: int = 200, error: str | None = None, warnings: tuple[str, ...] = ()
) -> Answer:
    return Answer(status, body, warnings, error)


def approval(
    name: str = NAME,
    phase: str | None = None,
    *,
    namespace: str = NS,
    created: str = "2025-01-01T00:00:00Z",
    action: Mapping[str, Any] | None = None,
    requested_by: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    risk: str | None = "financial",
    **status: Any,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "creationTimestamp": created}
    if labels:
        metadata["labels"] = dict(labels)
    spec: dict[str, Any] = {
        "action": dict(
            action or {"type": "tool_call", "toolCallRef": {"name": "tc-1"}, "tool": "issue-refund"}
        ),
        "routing": {"approvers": ["team:payments"], "timeoutMinutes": 30, "onTimeout": "deny"},
    }
    if requested_by is not None:
        spec["requestedBy"] = dict(requested_by)
    else:
        spec["requestedBy"] = {"agentRef": {"name": "refunds"}}
    if risk:
        spec["risk"] = {"level": risk}
    document: dict[str, Any] = {
        "apiVersion": "runtime.joch.dev/v1alpha1",
        "kind": "Approval",
        "metadata": metadata,
        "spec": spec,
    }
    if phase is not None or status:
        document["status"] = {**({"phase": phase} if phase else {}), **status}
    return document


Call = tuple[str, str, dict[str, str] | None, Any, str | None]


class FakeCluster:
    """Answers by (method, path): a list is a script (its last answer repeats)."""

    def __init__(self, routes: Mapping[tuple[str, str], list[Answer]]) -> None:
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
        return route.pop(0) if len(route) > 1 else route[0]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="joch")
    approvals_cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def listing(*items: dict[str, Any], token: str = "") -> Answer:
    return answer({"kind": "ApprovalList", "metadata": {"continue": token}, "items": list(items)})


def cells(line: str) -> list[str]:
    """A table line's cells (columns are three or more spaces apart; DECIDED BY has one)."""
    return [cell.strip() for cell in line.split("   ") if cell.strip()]


HEADER = ["NAME", "ACTION", "AGENT", "TOOL", "RISK", "PHASE", "DECIDED BY", "AGE", "EXPIRES"]


# --- ls --------------------------------------------------------------------------------------------------


def test_ls_derives_agent_tool_risk_and_expires_oldest_first() -> None:
    items = [
        approval(
            "promote-b",
            "Pending",
            created="2025-01-01T00:05:00Z",
            action={"type": "promotion"},
            requested_by={"user": "alice"},
            labels={"joch.dev/deployment": "checkout"},
            risk=None,
            expiresAt="2025-01-01T00:14:00Z",
        ),
        approval(
            "refund-a",
            "Approved",
            created="2025-01-01T00:00:00Z",
            decision="approve",
            decidedBy="bob@example.com",
            expiresAt="2025-01-01T00:30:00Z",
        ),
        approval(
            "exec-c",
            created="2025-01-01T00:08:00Z",
            requested_by={"executionRef": {"name": "refunds-x7k2p"}},
            expiresAt="2025-01-01T00:38:00Z",
        ),
        approval(
            "override-d",
            "Pending",
            created="2025-01-01T00:09:00Z",
            action={"type": "override"},
            requested_by={},
            risk=None,
            expiresAt="2025-01-01T00:07:00Z",
        ),
    ]
    fake = FakeCluster({("GET", COLLECTION): [listing(*items)]})
    out = io.StringIO()
    assert approvals_cli.run_ls(parse("approvals", "ls"), out=out, cluster=fake, now=NOW) == 0
    lines = out.getvalue().splitlines()
    assert cells(lines[0]) == HEADER
    assert [cells(line) for line in lines[1:]] == [
        [
            "refund-a",
            "tool_call",
            "refunds",
            "issue-refund",
            "financial",
            "Approved",
            "bob@example.com",
            "10m",
            "-",
        ],
        ["promote-b", "promotion", "checkout", "-", "-", "Pending", "-", "5m", "in 4m"],
        ["exec-c", "tool_call", "refunds-x7k2p", "issue-refund", "financial", "Pending", "-", "2m", "in 28m"],
        ["override-d", "override", "-", "-", "-", "Pending", "-", "60s", "3m ago"],
    ]
    assert lines[0].index("EXPIRES") == lines[2].index("in 4m")
    assert fake.calls[0][2] == {"limit": "500"}


def test_promotion_label_is_used_only_for_promotions_and_agent_wins_over_execution() -> None:
    both = approval(requested_by={"agentRef": {"name": "a"}, "executionRef": {"name": "e"}})
    labelled = approval(requested_by={}, labels={"joch.dev/deployment": "checkout"})
    fake = FakeCluster({("GET", COLLECTION): [listing(both, labelled)]})
    out = io.StringIO()
    assert approvals_cli.run_ls(parse("approvals", "ls"), out=out, cluster=fake, now=NOW) == 0
    assert [cells(line)[2] for line in out.getvalue().splitlines()[1:]] == ["a", "-"]


def test_ls_pending_keeps_pending_and_unseen_ones(capsys: pytest.CaptureFixture[str]) -> None:
    items = [
        approval("unseen", created="2025-01-01T00:01:00Z"),
        approval("waiting", "Pending", created="2025-01-01T00:02:00Z"),
        *(
            approval(phase.lower(), phase, created="2025-01-01T00:03:00Z")
            for phase in ("Approved", "Rejected", "Expired", "Overridden")
        ),
    ]
    fake = FakeCluster({("GET", COLLECTION): [listing(*items)]})
    out = io.StringIO()
    assert approvals_cli.run_ls(parse("approvals", "ls", "--pending"), out=out, cluster=fake, now=NOW) == 0
    rows = [cells(line) for line in out.getvalue().splitlines()[1:]]
    assert [(row[0], row[5]) for row in rows] == [("unseen", "Pending"), ("waiting", "Pending")]
    out = io.StringIO()
    args = parse("approvals", "ls", "--pending", "-o", "json")
    assert approvals_cli.run_ls(args, out=out, cluster=fake) == 0
    assert [item["metadata"]["name"] for item in json.loads(out.getvalue())["items"]] == ["unseen", "waiting"]
    fake = FakeCluster({("GET", COLLECTION): [listing(approval(phase="Approved"))]})
    out = io.StringIO()
    assert approvals_cli.run_ls(parse("approvals", "ls", "--pending"), out=out, cluster=fake) == 0
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "No pending Approvals found in namespace default.\n"


def test_ls_all_namespaces_adds_the_column_and_follows_continue() -> None:
    path = "/apis/runtime.joch.dev/v1alpha1/approvals"
    fake = FakeCluster(
        {
            ("GET", path): [
                listing(approval("b", namespace="ops", created="2025-01-01T00:09:00Z"), token="t1"),
                listing(approval("a", namespace="support", created="2025-01-01T00:08:00Z")),
            ]
        }
    )
    out = io.StringIO()
    assert approvals_cli.run_ls(parse("approvals", "ls", "-A"), out=out, cluster=fake, now=NOW) == 0
    lines = out.getvalue().splitlines()
    assert cells(lines[0]) == ["NAMESPACE", *HEADER]
    assert [cells(line)[:2] for line in lines[1:]] == [["support", "a"], ["ops", "b"]]
    assert [call[2] for call in fake.calls] == [{"limit": "500"}, {"limit": "500", "continue": "t1"}]


def test_ls_namespace_and_all_namespaces_are_exclusive() -> None:
    with pytest.raises(SystemExit) as raised:
        parse("approvals", "ls", "-n", "x", "-A")
    assert raised.value.code == 2


def test_ls_refused_or_not_served_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", COLLECTION): [answer(status=403, error="approvals is forbidden")]})
    assert approvals_cli.run_ls(parse("approvals", "ls"), out=io.StringIO(), cluster=fake) == 1
    assert (
        capsys.readouterr().err == "joch approvals ls: error: cannot list Approvals: approvals is forbidden\n"
    )
    fake = FakeCluster({("GET", COLLECTION): [answer(status=404, error="not found")]})
    assert approvals_cli.run_ls(parse("approvals", "ls"), out=io.StringIO(), cluster=fake) == 1
    assert "does not serve Approvals (runtime.joch.dev/v1alpha1)" in capsys.readouterr().err


def test_unusable_kubeconfig_exits_2_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("approvals", "ls", "--kubeconfig", "/nonexistent/kubeconfig")
    assert approvals_cli.run_ls(args, out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert err.startswith("joch approvals ls: error: cannot load the kubeconfig")
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("phase", "expires", "text"),
    [
        ("Pending", "2025-01-01T00:14:00Z", "in 4m"),
        (None, "2025-01-01T00:10:30Z", "in 30s"),
        ("Pending", "2025-01-01T03:10:00Z", "in 3h"),
        ("Pending", "2025-01-01T00:08:00Z", "2m ago"),
        ("Pending", None, "-"),
        ("Rejected", "2025-01-01T00:14:00Z", "-"),
        ("Expired", "2025-01-01T00:08:00Z", "-"),
    ],
)
def test_format_expires(phase: str | None, expires: str | None, text: str) -> None:
    status: dict[str, Any] = {"expiresAt": expires} if expires else {}
    assert approvals_cli.format_expires(approval(phase=phase, **status), NOW) == text


# --- get -------------------------------------------------------------------------------------------------


def fields(text: str) -> dict[str, str]:
    return {label: value.strip() for label, _, value in (line.partition(":") for line in text.splitlines())}


def test_get_describes_a_pending_approval() -> None:
    pending = approval(
        phase="Pending",
        action={
            "type": "tool_call",
            "toolCallRef": {"name": "tc-1"},
            "tool": "issue-refund",
            "inputSummary": "amount: 120 EUR\ncustomer: c-42",
        },
        requested_by={"agentRef": {"name": "refunds"}, "executionRef": {"name": "refunds-x7k2p"}},
        expiresAt="2025-01-01T00:14:00Z",
    )
    pending["spec"]["policyRef"] = {"name": "refund-limits", "namespace": "joch-system"}
    pending["spec"]["risk"]["summary"] = "moves money"
    pending["spec"]["options"] = ["approve", "reject"]
    fake = FakeCluster({("GET", OBJECT): [answer(pending)]})
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", NAME), out=out, cluster=fake, now=NOW) == 0
    text = out.getvalue()
    assert text.splitlines()[0] == f"Approval:     default/{NAME}"
    shown = fields(text)
    assert shown["Action"] == "tool_call"
    assert shown["Tool"] == "issue-refund"
    assert shown["ToolCall"] == "default/tc-1"
    assert shown["Requested by"] == "Agent default/refunds, Execution default/refunds-x7k2p"
    assert shown["Approvers"] == "team:payments"
    assert shown["Options"] == "approve, reject"
    assert shown["Timeout"] == "30m, then deny"
    assert shown["Policy"] == "joch-system/refund-limits"
    assert shown["Risk"] == "financial: moves money"
    assert "Input:        amount: 120 EUR\n              customer: c-42\n" in text
    assert shown["Phase"] == "Pending"
    assert shown["Expires"] == "2025-01-01T00:14:00Z (in 4m)"
    assert "Decision" not in shown
    assert "Review" not in shown


def test_get_describes_the_decision_override_and_review() -> None:
    overridden = approval(
        phase="Overridden",
        requested_by={"user": "alice"},
        decision="reject",
        decidedBy="bob",
        decidedAt="2025-01-01T00:03:00Z",
        rationale="over the limit",
        expiresAt="2025-01-01T00:30:00Z",
        override={"by": "carol", "at": "2025-01-01T00:05:00Z", "reason": "INC-802"},
        review={"required": True},
    )
    fake = FakeCluster({("GET", OBJECT): [answer(overridden)]})
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", NAME), out=out, cluster=fake, now=NOW) == 0
    shown = fields(out.getvalue())
    assert shown["Requested by"] == "user alice"
    assert shown["Phase"] == "Overridden"
    assert shown["Expires"] == "2025-01-01T00:30:00Z"
    assert shown["Decision"] == "reject"
    assert shown["Decided by"] == "bob"
    assert shown["Rationale"] == "over the limit"
    assert shown["Overridden by"] == "carol"
    assert shown["Override reason"] == "INC-802"
    assert shown["Review"].startswith("required: an auditor must acknowledge it")
    overridden["status"]["review"] = {
        "required": False,
        "acknowledgedBy": "dave",
        "acknowledgedAt": "2025-01-01T01:00:00Z",
        "note": "fine",
    }
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", NAME), out=out, cluster=fake, now=NOW) == 0
    assert "Review:          acknowledged by dave at 2025-01-01T01:00:00Z\n" in out.getvalue()
    assert fields(out.getvalue())["Review note"] == "fine"


def test_get_of_a_promotion_names_the_deployment() -> None:
    promotion = approval(
        action={"type": "promotion"}, requested_by={}, labels={"joch.dev/deployment": "checkout"}
    )
    fake = FakeCluster({("GET", OBJECT): [answer(promotion)]})
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", NAME), out=out, cluster=fake, now=NOW) == 0
    assert fields(out.getvalue())["Requested by"] == "Deployment default/checkout"


def test_get_not_found_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("GET", f"{COLLECTION}/nope"): [answer(status=404, error="not found")]})
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", "nope"), out=out, cluster=fake) == 1
    assert capsys.readouterr().err == "joch approvals get: error: Approval default/nope not found\n"
    assert out.getvalue() == ""
    fake = FakeCluster({("GET", OBJECT): [answer(approval())]})
    out = io.StringIO()
    assert approvals_cli.run_get(parse("approvals", "get", NAME, "-o", "yaml"), out=out, cluster=fake) == 0
    assert yaml.safe_load(out.getvalue()) == approval()


# --- decide / override / acknowledge ---------------------------------------------------------------------


def stamped(**status: Any) -> Answer:
    return answer(approval(**status))


@pytest.mark.parametrize(
    ("decision", "rationale", "patch", "line"),
    [
        (
            "approve",
            ["--rationale", "known customer"],
            {"decision": "approve", "phase": "Approved", "rationale": "known customer"},
            f"approval/{NAME} approved by bob@example.com\n",
        ),
        (
            "approve",
            [],
            {"decision": "approve", "phase": "Approved"},
            f"approval/{NAME} approved by bob@example.com\n",
        ),
        (
            "edit",
            ["--rationale", "capped at 100"],
            {"decision": "edit", "phase": "Approved", "rationale": "capped at 100"},
            f"approval/{NAME} approved (edit) by bob@example.com\n",
        ),
        (
            "reject",
            ["--rationale", "over the limit"],
            {"decision": "reject", "phase": "Rejected", "rationale": "over the limit"},
            f"approval/{NAME} rejected by bob@example.com\n",
        ),
    ],
)
def test_decide_sends_the_merge_patch_of_the_status(
    decision: str, rationale: list[str], patch: dict[str, Any], line: str
) -> None:
    fake = FakeCluster({("PATCH", STATUS): [stamped(phase="Approved", decidedBy="bob@example.com")]})
    out = io.StringIO()
    args = parse("approvals", "decide", NAME, "--decision", decision, *rationale)
    assert approvals_cli.run_decide(args, out=out, cluster=fake) == 0
    assert fake.calls == [("PATCH", STATUS, None, {"status": patch}, MERGE_PATCH)]
    assert "decidedBy" not in patch
    assert "decidedAt" not in patch
    assert out.getvalue() == line


def test_decide_in_another_namespace_and_without_a_stamp() -> None:
    path = "/apis/runtime.joch.dev/v1alpha1/namespaces/support/approvals/a%20b/status"
    fake = FakeCluster({("PATCH", path): [answer({"metadata": {"name": "a b"}})]})
    out = io.StringIO()
    args = parse("approvals", "decide", "a b", "-n", "support", "--decision", "approve")
    assert approvals_cli.run_decide(args, out=out, cluster=fake) == 0
    assert out.getvalue() == "approval/a b approved\n"


@pytest.mark.parametrize("rationale", [[], ["--rationale", ""], ["--rationale", "  "]])
def test_reject_needs_a_rationale_before_any_call(
    rationale: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCluster({})
    args = parse("approvals", "decide", NAME, "--decision", "reject", *rationale)
    assert approvals_cli.run_decide(args, out=io.StringIO(), cluster=fake) == 2
    err = capsys.readouterr().err
    assert err.startswith("joch approvals decide: error: --rationale is required to reject")
    assert fake.calls == []


def test_decide_usage_errors() -> None:
    for argv in (["approvals", "decide", NAME], ["approvals", "decide", NAME, "--decision", "maybe"]):
        with pytest.raises(SystemExit) as raised:
            parse(*argv)
        assert raised.value.code == 2


DENIALS = [
    (403, 'admission webhook "approvals.runtime.joch.dev" denied the request: bob is not an approver'),
    (400, "the server rejected our request: status.rationale is required to reject"),
    (
        422,
        'Approval.runtime.joch.dev "refund-4711-x2k9" is invalid: status: Invalid value: "object": '
        "status.decision is immutable once set",
    ),
]


@pytest.mark.parametrize(("status", "message"), DENIALS)
def test_decide_refused_prints_the_servers_message_and_exits_1(
    status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCluster({("PATCH", STATUS): [answer(status=status, error=message)]})
    out = io.StringIO()
    args = parse("approvals", "decide", NAME, "--decision", "approve")
    assert approvals_cli.run_decide(args, out=out, cluster=fake) == 1
    err = capsys.readouterr().err
    assert (
        err == f"joch approvals decide: error: Approval default/{NAME}: the API server refused: {message}\n"
    )
    assert "Traceback" not in err
    assert out.getvalue() == ""


def test_decide_not_found_and_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakeCluster({("PATCH", STATUS): [answer(status=404, error="not found")]})
    args = parse("approvals", "decide", NAME, "--decision", "approve")
    assert approvals_cli.run_decide(args, out=io.StringIO(), cluster=fake) == 1
    assert capsys.readouterr().err == f"joch approvals decide: error: Approval default/{NAME} not found\n"
    warned = answer(approval(decidedBy="bob"), warnings=("the ToolCall already timed out",))
    fake = FakeCluster({("PATCH", STATUS): [warned]})
    assert approvals_cli.run_decide(args, out=io.StringIO(), cluster=fake) == 0
    assert capsys.readouterr().err == "Warning: the ToolCall already timed out\n"


def test_override_sends_phase_and_reason_only() -> None:
    overridden = stamped(
        phase="Overridden", override={"by": "carol", "at": "2025-01-01T00:05:00Z", "reason": "x"}
    )
    fake = FakeCluster({("PATCH", STATUS): [overridden]})
    out = io.StringIO()
    args = parse("approvals", "override", NAME, "--reason", "INC-802: refund ordered by legal")
    assert approvals_cli.run_override(args, out=out, cluster=fake) == 0
    assert fake.calls == [
        (
            "PATCH",
            STATUS,
            None,
            {"status": {"phase": "Overridden", "override": {"reason": "INC-802: refund ordered by legal"}}},
            MERGE_PATCH,
        )
    ]
    assert out.getvalue() == f"approval/{NAME} overridden by carol\n"


def test_override_needs_a_reason(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        parse("approvals", "override", NAME)
    assert raised.value.code == 2
    capsys.readouterr()
    fake = FakeCluster({})
    assert (
        approvals_cli.run_override(parse("approvals", "override", NAME, "--reason", " "), cluster=fake) == 2
    )
    assert "--reason must say why" in capsys.readouterr().err
    assert fake.calls == []


def test_override_refused_for_the_requester(capsys: pytest.CaptureFixture[str]) -> None:
    message = (
        'admission webhook "approvals.runtime.joch.dev" denied the request: alice requested this Approval'
    )
    fake = FakeCluster({("PATCH", STATUS): [answer(status=403, error=message)]})
    args = parse("approvals", "override", NAME, "--reason", "urgent")
    assert approvals_cli.run_override(args, out=io.StringIO(), cluster=fake) == 1
    assert capsys.readouterr().err.endswith(f"the API server refused: {message}\n")


@pytest.mark.parametrize(
    ("argv", "review"),
    [
        (["--note", "reviewed with finance"], {"required": False, "note": "reviewed with finance"}),
        ([], {"required": False}),
    ],
)
def test_acknowledge_sends_the_review_only(argv: list[str], review: dict[str, Any]) -> None:
    acknowledged = stamped(phase="Overridden", review={"required": False, "acknowledgedBy": "dave"})
    fake = FakeCluster({("PATCH", STATUS): [acknowledged]})
    out = io.StringIO()
    assert (
        approvals_cli.run_acknowledge(parse("approvals", "acknowledge", NAME, *argv), out=out, cluster=fake)
        == 0
    )
    assert fake.calls == [("PATCH", STATUS, None, {"status": {"review": review}}, MERGE_PATCH)]
    assert out.getvalue() == f"approval/{NAME} review acknowledged by dave\n"


def test_acknowledge_refused(capsys: pytest.CaptureFixture[str]) -> None:
    message = 'admission webhook "approvals.runtime.joch.dev" denied the request: needs the joch-auditor role'
    fake = FakeCluster({("PATCH", STATUS): [answer(status=403, error=message)]})
    assert (
        approvals_cli.run_acknowledge(parse("approvals", "ack", NAME), out=io.StringIO(), cluster=fake) == 1
    )
    assert message in capsys.readouterr().err


def help_of(*argv: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as raised:
        main_cli.build_parser().parse_args([*argv, "--help"])
    assert raised.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_help_says_who_stamps_and_which_roles(capsys: pytest.CaptureFixture[str]) -> None:
    decide = help_of("approvals", "decide", capsys=capsys)
    assert "decidedBy and decidedAt are never sent: the server stamps them" in decide
    assert "examples: joch approvals decide" in decide
    override = help_of("approvals", "override", capsys=capsys)
    assert "Needs the joch-break-glass role; refused for the requester" in override
    assert "service accounts" in override
    assert "Warning Event" in override
    assert "an auditor must acknowledge" in override
    assert "Needs the joch-auditor role" in help_of("approvals", "acknowledge", capsys=capsys)
    assert "joch approvals ls --pending" in help_of("approvals", capsys=capsys)


def test_main_registers_approvals() -> None:
    parser = main_cli.build_parser()
    assert parser.parse_args(["approvals", "ls", "--pending"]).handler is approvals_cli.run_ls
    assert parser.parse_args(["approvals", "get", "x"]).handler is approvals_cli.run_get
    assert (
        parser.parse_args(["approvals", "decide", "x", "--decision", "approve"]).handler
        is approvals_cli.run_decide
    )
    assert (
        parser.parse_args(["approvals", "override", "x", "--reason", "r"]).handler
        is approvals_cli.run_override
    )
    assert parser.parse_args(["approvals", "acknowledge", "x"]).handler is approvals_cli.run_acknowledge
