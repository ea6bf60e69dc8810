"""DecisionService: watch events in, decisions out (joch.decision_service.service).

Cases: an ADDED/listed Policy decides; a MODIFIED Policy with a new generation replaces it (version
v2), an event repeating the same generation and spec compiles nothing; DELETED removes it (allow
again), a stale DELETED of an object since re-created under the same name is ignored; the PolicySet
is rebuilt once per burst of changes; a Policy that does not compile denies (PolicyError, naming it)
every agent it governs and no other, and a later valid version lifts that; order (explicit, selected,
environment-bound); a bound Policy that is missing or invalid denies; the watched Environment's
allowedProviders replaces the context's (and its absence allows every provider), an unknown
Environment leaves the context alone; environment-bound policies apply; load() replaces everything
and marks the service ready; preflight skips runtime-only rules; counts; describe().
"""

from __future__ import annotations

import datetime
from typing import Any

from joch.decision_service import requests
from joch.decision_service.service import DecisionService
from joch.domain.settings import OperatorSettings
from tests.unit.decision_service import factories as f

NOW = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def decide(service: DecisionService, context: dict[str, Any], **request: Any) -> dict[str, Any]:
    parsed = requests.parse_request({"context": context, **request})
    return service.decide(parsed, now=NOW).to_dict()


def shell(**kwargs: Any) -> dict[str, Any]:
    return f.context(tool={"name": "shell.exec"}, **kwargs)


def openai(**kwargs: Any) -> dict[str, Any]:
    return f.context(model={"provider": "openai", "name": "gpt"}, **kwargs)


def test_a_listed_policy_decides_and_a_modified_one_replaces_it() -> None:
    service = DecisionService()
    service.observe_policy(None, f.policy())
    assert decide(service, shell()) == {
        "decision": "deny",
        "reason": "no shell",
        "policyId": "caps",
        "policyNamespace": "support",
        "policyVersion": "v1",
        "rule": 0,
    }
    changed = f.policy(generation=2, rules=[{"when": {"tool.name": "rm"}, "action": "deny"}])
    service.observe_policy("MODIFIED", changed)
    assert decide(service, shell())["decision"] == "allow"
    rm = decide(service, f.context(tool={"name": "rm"}))
    assert (rm["decision"], rm["policyVersion"]) == ("deny", "v2")


def test_same_generation_and_spec_compiles_nothing_and_keeps_the_set() -> None:
    service = DecisionService()
    service.observe_policy("ADDED", f.policy())
    first = service.policy_set()
    service.observe_policy("MODIFIED", f.policy())  # e.g. a status update
    assert service.policy_set() is first
    assert service.counts["compiles"] == 1


def test_a_burst_of_events_rebuilds_the_set_once() -> None:
    service = DecisionService()
    for number in range(50):
        service.observe_policy(None, f.policy(f"p{number}"))
    assert service._set is None
    assert len(service.policy_set()) == 50
    assert service.policy_set() is service.policy_set()


def test_deleted_removes_and_a_stale_delete_is_ignored() -> None:
    service = DecisionService()
    service.observe_policy(None, f.policy(uid="old"))
    service.observe_policy("DELETED", f.policy(uid="old"))
    assert decide(service, shell()) == {"decision": "allow", "reason": "no rule matched"}
    service.observe_policy("ADDED", f.policy(uid="new"))
    service.observe_policy("DELETED", f.policy(uid="old"))  # late event about the previous object
    assert decide(service, shell())["decision"] == "deny"
    service.observe_policy("DELETED", f.policy(uid="new"))
    assert decide(service, shell())["decision"] == "allow"
    assert service.describe() == []


def test_an_invalid_policy_denies_what_it_governs_until_fixed() -> None:
    service = DecisionService()
    bad = f.policy(rules=[{"when": {"cost.runUSD": ">5"}, "action": "deny"}], match_labels={"team": "a"})
    service.observe_policy(None, bad)
    denied = decide(service, f.context(labels={"team": "a"}))
    assert denied["decision"] == "deny"
    assert denied["reason"].startswith("PolicyError: policy support/caps (v1) is invalid: spec.rules[0]")
    assert "runUSD" in denied["reason"]
    assert (denied["policyId"], denied["policyVersion"]) == ("caps", "v1")
    assert decide(service, f.context(labels={"team": "b"}))["decision"] == "allow"
    assert decide(service, f.context(namespace="other", labels={"team": "a"}))["decision"] == "allow"
    assert service.describe()[0]["valid"] is False
    service.observe_policy("MODIFIED", f.policy(generation=2, match_labels={"team": "a"}))
    assert decide(service, f.context(labels={"team": "a"}))["decision"] == "allow"
    assert service.describe() == [{"namespace": "support", "name": "caps", "version": "v2", "valid": True}]


def test_a_policy_whose_envelope_does_not_parse_governs_its_whole_namespace() -> None:
    service = DecisionService()
    body = f.policy(rules=[])
    body["spec"]["appliesTo"] = "everything"
    service.observe_policy(None, body)
    assert decide(service, f.context())["decision"] == "deny"
    assert decide(service, f.context(namespace="elsewhere"))["decision"] == "allow"


def test_explicit_then_selected_then_environment_bound() -> None:
    service = DecisionService()
    approve = {"when": {"tool.name": "shell.exec"}, "require": {"approval": "human"}, "action": "allow"}
    service.observe_policy(None, f.policy("a-selected", rules=[approve]))
    service.observe_policy(None, f.policy("z-explicit", rules=[f.DENY_SHELL], match_labels={"nobody": "x"}))
    service.observe_policy(None, f.policy("env-bound", rules=[f.DENY_OPENAI], match_labels={"nobody": "x"}))
    service.observe_environment(None, f.environment(policies=[{"name": "env-bound"}]))
    assert decide(service, shell())["decision"] == "allow"  # z-explicit selects nobody
    explicit = decide(service, shell(), policies=["z-explicit"])
    assert (explicit["decision"], explicit["policyId"]) == ("deny", "z-explicit")
    assert decide(service, openai())["decision"] == "allow"  # no environment named
    bound = decide(service, openai(environment="prod"))
    assert (bound["decision"], bound["policyId"]) == ("deny", "env-bound")


def test_missing_or_invalid_bound_policies_deny() -> None:
    service = DecisionService()
    missing = decide(service, shell(), policies=["gone"])
    assert missing["decision"] == "deny"
    assert missing["reason"] == "PolicyError: policy support/gone is bound to the agent but does not exist"
    service.observe_environment(None, f.environment(policies=[{"name": "fleet", "namespace": "joch-system"}]))
    env = decide(service, shell(environment="prod"))
    assert env["reason"] == (
        "PolicyError: policy joch-system/fleet is bound to environment prod but does not exist"
    )
    bad = f.policy("broken", rules=[{"action": "explode"}], match_labels={"nobody": "x"})
    service.observe_policy(None, bad)
    invalid = decide(service, shell(), policies=["broken"])
    assert invalid["reason"].startswith("PolicyError: policy support/broken (v1) is invalid: spec.rules[0]")


def test_the_watched_environment_decides_allowed_providers() -> None:
    service = DecisionService()
    service.observe_policy(None, f.policy(rules=[f.NOT_ALLOWLISTED]))
    claimed = openai(environment="prod")
    claimed["environment"]["allowedProviders"] = ["openai"]
    assert decide(service, claimed)["decision"] == "allow"  # unknown Environment: context as given
    service.observe_environment("ADDED", f.environment(allowed_providers=["anthropic"]))
    assert decide(service, claimed)["decision"] == "deny"  # the cluster wins
    assert decide(service, openai(environment="prod"))["decision"] == "deny"
    service.observe_environment("MODIFIED", f.environment())  # no list: every provider allowed
    assert decide(service, claimed)["decision"] == "allow"
    assert service.enrich(claimed)["environment"] == {"name": "prod"}
    service.observe_environment("DELETED", f.environment())
    assert service.environment("prod") is None
    assert decide(service, claimed)["decision"] == "allow"


def test_load_replaces_everything_and_marks_ready() -> None:
    service = DecisionService()
    service.observe_policy(None, f.policy("stale"))
    service.observe_environment(None, f.environment("old"))
    before = service.ready
    service.load([f.policy("fresh")], [f.environment("prod")])
    assert (before, service.ready) == (False, True)
    assert [p["name"] for p in service.describe()] == ["fresh"]
    assert (service.environment("old"), service.environment("prod") is not None) == (None, True)


def test_preflight_skips_runtime_only_rules() -> None:
    service = DecisionService()
    cap = {"when": {"cost.runUsd": ">5"}, "action": "deny"}
    service.observe_policy(None, f.policy(rules=[cap]))
    expensive = f.context(cost={"runUsd": 9})
    assert decide(service, expensive)["decision"] == "deny"
    assert decide(service, expensive, preflight=True)["decision"] == "allow"


def test_the_settings_choose_the_cel_backend() -> None:
    # An int compared with a double: Rust compares (allow), cel-python refuses (fail-closed deny).
    rule = {"when": {"cel": "cost.runUsd > 1.0"}, "action": "deny"}
    decisions = {}
    for backend in ("common-expression-language", "cel-python"):
        service = DecisionService(settings=OperatorSettings(cel_backend=backend))
        service.observe_policy(None, f.policy(rules=[rule]))
        decisions[backend] = decide(service, f.context(cost={"runUsd": 0}))["decision"]
    assert decisions == {"common-expression-language": "allow", "cel-python": "deny"}


def test_shared_namespace_policies_govern_everywhere() -> None:
    service = DecisionService()
    service.observe_policy(None, f.policy("fleet", "joch-system"))
    assert decide(service, shell(namespace="anything"))["policyNamespace"] == "joch-system"


def test_counts_and_objects_without_names() -> None:
    service = DecisionService()
    nameless = f.policy()
    del nameless["metadata"]["name"]
    service.observe_policy(None, nameless)
    service.observe_environment(None, {"metadata": {}})
    service.observe_policy(None, f.policy())
    decide(service, shell())
    decide(service, f.context())
    assert service.counts["decisions"] == 2
    assert (service.counts["deny"], service.counts["allow"]) == (1, 1)
    assert len(service.describe()) == 1


def test_an_unexpected_compile_failure_denies_instead_of_breaking_the_watch() -> None:
    class Exploding:
        def compile(self, **_: Any) -> Any:
            raise RuntimeError("boom")

        def forget(self, **_: Any) -> None:
            pass

    service = DecisionService(compiler=Exploding())  # type: ignore[arg-type]
    service.observe_policy(None, f.policy())
    denied = decide(service, shell())
    assert denied["reason"].endswith("is invalid: internal error RuntimeError: boom")
