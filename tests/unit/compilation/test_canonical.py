"""canonical_yaml's fast block emitter writes exactly what PyYAML's pure-Python SafeDumper writes.

Cases: hand-picked shapes (nested sequences, empty collections, values that need quoting, special
floats, line breaks, long and empty keys that take PyYAML's path), property-based JSON-like documents
(hypothesis), and the fleet of compiled manifests used by the other tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from joch.domain import compilation
from joch.domain.compilation import canonical
from tests.unit.compilation import factories as f

CASES: list[Any] = [
    {"x": [[1, 2], []]},
    {"a": [[1], [{"x": 1, "y": []}]]},
    {"k": [{"a": [[{"b": 1}]]}], "e": {}},
    {"k": "", "quoted": "x: y", "yes": "yes", "null": "null", "zero": "007", "apostrophe": "it's"},
    {
        "floats": [1e17, float("nan"), float("inf"), -0.0, 0.1],
        "ints": [0, -3, 10**20],
        "bools": [True, False],
    },
    {"none": None, "tab": "tab\there", "unicode": "grüße ✓", "url": "http://joch-tool-gateway"},
    {"k": "two\nlines"},
    {"k": "é\u2028x"},
    {"": 1},
    {"a" * 130: 1},
    {"k": "a" * 300},
    {1: "non-string key"},
]


@pytest.mark.parametrize("value", [pytest.param(v, id=f"case {i}") for i, v in enumerate(CASES)])
def test_hand_picked_documents(value: Any) -> None:
    assert canonical.canonical_yaml(value) == canonical.pyyaml_dump(value)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from(
        ["yes", "no", "on", "~", "null", "1.0", "0x1f", "2026.10.1", "- a", "# c", "a: b", "'", '"']
    )
)
DOCUMENTS = st.dictionaries(
    st.text(max_size=12),
    st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=20,
    ),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(DOCUMENTS)
def test_generated_documents(value: dict[str, Any]) -> None:
    assert canonical.canonical_yaml(value) == canonical.pyyaml_dump(value)


def test_compiled_manifests() -> None:
    objects = [*f.world(), *(f.agent(f"agent-{i}", handoffs={"allowedAgents": ["x"]}) for i in range(5))]
    cat = f.catalog(objects)
    for agent in cat.agents():
        manifest = compilation.compile_agent(compilation.gather(agent, cat, f.SETTINGS), f.SETTINGS).manifest
        assert canonical.canonical_yaml(manifest) == canonical.pyyaml_dump(manifest)


RESOLVED_WORDS = ["yes", "No", "ON", "off", "True", "null", "NULL", "Null", "y", "n", "e5", "nan", "inf", "_"]
NUMBERS_AND_DATES = [
    "007",
    "0x1f",
    "0o17",
    "1_000",
    "1.0",
    "1e5",
    "1:20",
    "2026-11-27",
    "1.",
    "0b101",
    "a..b",
]
NAME_LIKE = st.text(alphabet="abcxyzABNOYEeln_./-@: #0123456789", min_size=1, max_size=12) | st.sampled_from(
    [*RESOLVED_WORDS, *NUMBERS_AND_DATES, "2026-11-27t10:00:00z"]
)


@settings(max_examples=1000, deadline=None)
@given(NAME_LIKE)
def test_names_written_plain_without_asking_pyyaml_are_what_pyyaml_writes(value: str) -> None:
    written_plain = canonical.pyyaml_dump([value]) == f"- {value}\n"
    if canonical._PLAIN_CANDIDATE.fullmatch(value):
        assert canonical._is_plain(value) == written_plain
    else:
        assert not canonical._is_plain(value)
    assert canonical.canonical_yaml({"k": value}) == canonical.pyyaml_dump({"k": value})
