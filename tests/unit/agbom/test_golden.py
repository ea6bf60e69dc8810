"""The examples/ fleet's support-triage Agent against a golden document (JOCH_UPDATE_GOLDEN=1 rewrites it)."""

from __future__ import annotations

import json
import os
import pathlib

from tests.unit.agbom import fleet

GOLDEN = pathlib.Path(__file__).parent / "golden" / "support-triage.cdx.json"
UID = "5f0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
TIMESTAMP = "2026-01-01T00:00:00Z"


def _text() -> str:
    content = fleet.content(fleet.examples_catalog(), namespace="support", name="support-triage", uid=UID)
    return fleet.render(content, generation=1, timestamp=TIMESTAMP)


def test_support_triage_matches_golden() -> None:
    text = _text()
    fleet.assert_valid(text)
    if os.environ.get("JOCH_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), (
        "rerun with JOCH_UPDATE_GOLDEN=1 after a deliberate change"
    )


def test_golden_says_what_the_fleet_has() -> None:
    doc = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert doc["specVersion"] == "1.6"
    assert doc["version"] == 1
    assert doc["serialNumber"].startswith("urn:uuid:")
    assert doc["metadata"]["component"]["bom-ref"] == UID
    assert doc["metadata"]["supplier"] == {"name": "support-platform"}
    assert doc["compositions"] == [{"aggregate": "complete", "assemblies": [UID]}]
    items = fleet.all_items(doc)
    assert {"model:openai:gpt-5-thinking", "model:anthropic:claude-sonnet", "mcp:support/github"} <= set(
        items
    )
    assert fleet.props(items["model:openai:gpt-5-thinking"])["joch:role"] == ["primary"]
    assert fleet.props(items["tool:support/zendesk.create-ticket"])["joch:requiresApproval"] == ["true"]
    assert not any(ref.startswith("secret:") for ref in items)


def test_golden_ends_cleanly() -> None:
    text = GOLDEN.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert all(line == line.rstrip() for line in text.splitlines())
