"""Composing the decisions of several guardians into one (docs/catalog.md section 4.3).

``compose(decisions)``, with the decisions in declared guardian order:

- any ``deny`` wins: the first deny is returned as it is;
- a guardian that gave no decision (``None``) counts as a deny (fail closed), reason ``PolicyError``;
- otherwise, if any guardian modified, the result is ``modify``: ``modifiedRequest`` objects are
  deep-merged in declared order (a later guardian's keys win; lists and scalars are replaced whole),
  redaction rules are unioned, and the policy keys are those of the first modifying guardian;
- otherwise every guardian allowed (unanimity), and the result is ``allow``;
- ``requires.approval`` is kept from the first guardian that asked for it; disabled-rule reports are
  concatenated. No guardians at all is an ``allow`` (nothing objected).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from joch.domain.policy import decision, redaction


def compose(decisions: Sequence[decision.Decision | None]) -> decision.Decision:
    """One decision from several guardians' decisions; see the module docstring."""
    for position, item in enumerate(decisions):
        if item is None:
            return decision.Decision("deny", f"PolicyError: guardian {position} gave no decision")
        if item.decision == "deny":
            return item
    given = [item for item in decisions if item is not None]
    disabled = tuple(report for item in given for report in item.disabled_rules)
    requires = next((item.requires for item in given if item.requires is not None), None)
    modifying = [item for item in given if item.decision == "modify"]
    if modifying:
        merged: Any = None
        for item in modifying:
            if item.modified_request is not None:
                merged = (
                    item.modified_request if merged is None else deep_merge(merged, item.modified_request)
                )
        rules = redaction.canonical_order(name for item in modifying for name in item.redaction_rules)
        reason = "; ".join(dict.fromkeys(item.reason for item in modifying))
        return dataclasses.replace(
            modifying[0],
            reason=reason,
            modified_request=merged,
            redaction_rules=rules,
            requires=requires,
            disabled_rules=disabled,
        )
    if not given:
        return decision.Decision("allow", "no guardian objected")
    asking = next((item for item in given if item.requires is not None), None)
    first = asking if asking is not None else given[0]
    return dataclasses.replace(first, requires=requires, disabled_rules=disabled)


def deep_merge(base: Any, update: Any) -> Any:
    """``update`` merged into ``base``: objects key by key, anything else replaced (``update`` wins)."""
    if isinstance(base, Mapping) and isinstance(update, Mapping):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else value
        return merged
    return update
