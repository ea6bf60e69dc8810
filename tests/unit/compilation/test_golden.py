"""Golden manifest for the worked example (examples/, support-triage).

Cases: the manifest compiled from examples/ equals tests/unit/golden/support-triage.yaml byte for byte,
and it compiles without problems. Regenerate the golden file only on purpose:
``JOCH_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/compilation/test_golden.py``.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from joch.cli import compile as compile_cli
from joch.domain import compilation
from joch.domain.settings import OperatorSettings
from tests import helpers

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden" / "support-triage.yaml"


def compile_example() -> compilation.Compiled:
    settings = OperatorSettings()
    cat = compile_cli.load_catalog([str(helpers.EXAMPLES)], default_namespace="default", settings=settings)
    (agent,) = cat.agents()
    return compilation.compile_agent(compilation.gather(agent, cat, settings), settings)


def test_support_triage_matches_golden_manifest() -> None:
    compiled = compile_example()
    assert compiled.problems == ()
    if os.environ.get("JOCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(compiled.manifest_yaml, encoding="utf-8")
        pytest.skip(f"golden file rewritten: {GOLDEN}")
    assert GOLDEN.exists(), f"{GOLDEN} is missing; create it with JOCH_UPDATE_GOLDEN=1"
    assert compiled.manifest_yaml == GOLDEN.read_text(encoding="utf-8")


def test_golden_manifest_is_the_documented_shape() -> None:
    compiled = compile_example()
    spec = compiled.manifest["spec"]
    assert compiled.name == "support-triage-g1"
    assert spec["policies"]["resolved"] == [
        "external-send-requires-approval@v1",
        "no-customer-data-exfiltration@v1",
    ]
    assert [(t["name"], t["requiresApproval"]) for t in spec["tools"]] == [
        ("zendesk.search", False),
        ("zendesk.create-ticket", True),
        ("slack.send", False),
    ]
    assert spec["modelRoute"] == {
        "name": "research-default",
        "primary": "openai:gpt-5-thinking",
        "fallback": ["anthropic:claude-sonnet"],
    }
    assert spec["environment"] == "prod"
