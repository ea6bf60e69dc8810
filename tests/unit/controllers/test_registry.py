"""The kopf registry and settings, and `joch operator`'s options (no cluster).

Cases: the registry holds one event handler per watched kind plus Namespaces (CAM ConfigMaps go
through joch.kube.watch, not kopf), startup/cleanup/login activities, and no change handlers (so kopf
writes nothing to watched objects and the essence-free diff-base storage is safe); kopf's storages use
the joch.dev prefix, posting and peering are off, kopf selects nothing by label; the CLI maps flags
onto options and settings (namespaces de-duplicated, shared namespaces and default environment overridden).
"""

from __future__ import annotations

import argparse
from typing import Any

import kopf
import pytest

from joch.cli import operator as operator_cli
from joch.controllers import registry
from joch.controllers.reconciler import Controller
from joch.domain.reconcile.cache import WATCHED_KINDS
from tests.fake_kube import FakeKube


def test_the_registry_observes_and_never_changes_objects() -> None:
    controller = Controller(FakeKube())  # type: ignore[arg-type]
    reg = registry.build_registry(controller)
    watching = reg._watching.get_all_handlers()
    ids = sorted(h.id for h in watching)
    assert len(ids) == len(WATCHED_KINDS) + 1
    assert "joch-agents" in ids
    assert "joch-namespaces" in ids
    assert not any("configmaps" in str(h.selector) for h in watching), "ConfigMaps: MetadataWatch"
    assert reg._changing.get_all_handlers() == []
    assert reg._spawning.get_all_handlers() == []
    activities = sorted(h.id for h in reg._activities.get_all_handlers())
    assert activities == ["joch-cleanup", "joch-login", "joch-startup"]


def test_kopf_settings() -> None:
    settings = registry.kopf_settings()
    progress = settings.persistence.progress_storage
    diffbase = settings.persistence.diffbase_storage
    assert isinstance(progress, kopf.AnnotationsProgressStorage)
    assert progress.prefix == "joch.dev"
    assert isinstance(diffbase, registry.EventsOnlyDiffBaseStorage)
    assert diffbase.prefix == "joch.dev"
    assert diffbase.build(body={"spec": {"a": 1}}) == {}
    assert settings.persistence.finalizer == "joch.dev/finalizer"
    assert settings.posting.enabled is False
    assert settings.peering.standalone is True
    assert list(settings.watching.label_selectors.values()) == []


def parse(*argv: str) -> argparse.Namespace:
    return operator_cli.build_parser().parse_args(list(argv))


def test_cli_options(monkeypatch: Any) -> None:
    monkeypatch.setenv("JOCH_SHARED_NAMESPACES", "shared-a")
    options = operator_cli.options_from(parse("--kubeconfig", "/k", "-n", "a", "-n", "b", "-n", "a"))
    assert options.kubeconfig == "/k"
    assert options.controller.namespaces == ("a", "b")
    assert options.controller.settings.shared_namespaces == ("shared-a",)
    assert options.controller.workers == 16
    assert (options.limits.concurrency, options.limits.writes_per_second) == (16, 200.0)

    options = operator_cli.options_from(
        parse(
            "--shared-namespaces",
            "x, y",
            "--default-environment",
            "prod",
            "--workers",
            "4",
            "--write-rate",
            "50",
            "--concurrency",
            "8",
        )
    )
    assert options.controller.namespaces == ()
    assert options.controller.settings.shared_namespaces == ("x", "y")
    assert options.controller.settings.default_environment == "prod"
    assert options.controller.workers == 4
    assert (options.limits.concurrency, options.limits.writes_per_second) == (8, 50.0)


def test_cli_audit_log_options() -> None:
    options = operator_cli.options_from(parse(), environ={})
    assert (options.audit_log, options.audit_hash_chain) == (None, False)
    options = operator_cli.options_from(parse("--audit-log", "-", "--audit-hash-chain"), environ={})
    assert (options.audit_log, options.audit_hash_chain) == ("-", True)


def test_cli_cel_backend_reaches_every_policy_compiler(capsys: Any) -> None:
    # --cel-backend over $JOCH_CEL_BACKEND over the default; the controller's one policy compiler (also
    # the decision service's) compiles with it.
    assert operator_cli.options_from(parse(), environ={}).controller.settings.cel_backend == (
        "common-expression-language"
    )
    from_env = operator_cli.options_from(parse(), environ={"JOCH_CEL_BACKEND": "celpy"})
    assert from_env.controller.settings.cel_backend == "cel-python"
    options = operator_cli.options_from(
        parse("--cel-backend", "rust"), environ={"JOCH_CEL_BACKEND": "cel-python"}
    )
    assert options.controller.settings.cel_backend == "common-expression-language"
    controller = Controller(FakeKube(), from_env.controller)  # type: ignore[arg-type]
    assert controller.programs.options.resolve_backend().name == "cel-python"
    with pytest.raises(SystemExit) as exited:
        parse("--cel-backend", "v8")
    assert exited.value.code == 2
    assert "argument --cel-backend: unknown CEL backend 'v8'" in capsys.readouterr().err


def test_cli_resync_period(capsys: Any) -> None:
    assert operator_cli.options_from(parse()).controller.resync_period == 600.0
    assert operator_cli.options_from(parse("--resync-period", "0")).controller.resync_period == 0.0
    assert operator_cli.options_from(parse("--resync-period", "2.5")).controller.resync_period == 2.5
    for bad in ("-1", "soon", "inf", "nan"):
        with pytest.raises(SystemExit) as exited:
            parse("--resync-period", bad)
        assert exited.value.code == 2
        assert "--resync-period" in capsys.readouterr().err


def test_cli_registers_the_operator_command() -> None:
    parser = argparse.ArgumentParser()
    operator_cli.register(parser.add_subparsers())
    args = parser.parse_args(["operator", "-A", "--event-rate", "5"])
    assert args.handler is operator_cli.run
    assert args.all_namespaces is True
    assert args.event_rate == 5.0
