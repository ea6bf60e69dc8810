"""The governance audit trail, pure: OCSF-shaped records, their canonical form and the hash chain.

One record says that one governance decision happened: an admission denial, an Approval decided,
overridden or expired, a promotion admitted, a Budget breached, a high-risk AgBOM finding. It is a plain
``dict`` (JSON-ready) in the shape of an OCSF event (docs/audit.md describes every field):

- ``time`` (epoch milliseconds) and ``time_dt`` (RFC 3339, UTC, milliseconds);
- ``category_uid``/``category_name`` (6, Application Activity), ``class_uid``/``class_name`` (one Joch
  extension class per kind of decision, :data:`CLASSES`), ``activity_id``/``activity_name`` and
  ``type_uid`` (``class_uid * 100 + activity_id``) for the decision;
- ``actor.user.name`` and ``actor.user.groups`` (``[{"name": group}]``): the user the API server
  authenticated (or the operator, for what it decides itself), never what a client wrote;
- ``status``/``status_id``, ``severity``/``severity_id``, ``message`` (the reason);
- ``metadata``: ``product`` (``{"name": "Joch", "vendor_name": "Joch", "version": ...}``), ``version``
  (the OCSF schema version), with the chain ``sequence``;
- ``joch``: what OCSF has no field for: ``resource`` (apiVersion, kind, namespace, name, uid), ``decision``
  and ``policy`` (id, version) when a policy made it.

:func:`canonical` is the one serialization (sorted keys, compact separators, UTF-8, no NaN). With the
hash chain on, :class:`Chain` seals each record: ``metadata.sequence`` (1, 2, ...), ``prev_hash`` (the
previous record's ``hash``; :data:`ZERO_HASH` for the first) and ``hash`` (hex SHA-256 of the canonical
record without ``hash``). :func:`verify` reads a file's lines back and names every line that was changed,
removed before, moved, or does not parse.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from joch.api import v1alpha1
from joch.domain.reconcile.cache import Entry

__all__ = [
    "CLASSES",
    "DECISIONS",
    "OCSF_VERSION",
    "OPERATOR_USER",
    "SEVERITIES",
    "ZERO_HASH",
    "Actor",
    "AuditClass",
    "Chain",
    "Policy",
    "Problem",
    "Resource",
    "canonical",
    "digest",
    "is_chained",
    "last_link",
    "record",
    "verify",
]

OCSF_VERSION: Final = "1.3.0"
PRODUCT: Final = "Joch"
ZERO_HASH: Final = "0" * 64
"""``prev_hash`` of the first record of a chain."""
OPERATOR_USER: Final = "system:joch:operator"
"""``actor.user.name`` of what the operator decides itself (expiries, budget breaches, AgBOM findings)."""
CATEGORY_UID: Final = 6
CATEGORY_NAME: Final = "Application Activity"


@dataclasses.dataclass(frozen=True, slots=True)
class AuditClass:
    uid: int
    name: str


CLASSES: Final[Mapping[str, AuditClass]] = {
    # Joch extension classes in OCSF's Application Activity category (not registered OCSF classes).
    "admission_denial": AuditClass(6901, "Admission Denial"),
    "approval_decision": AuditClass(6902, "Approval Decision"),
    "approval_override": AuditClass(6903, "Approval Override"),
    "approval_expiry": AuditClass(6904, "Approval Expiry"),
    "promotion": AuditClass(6905, "Promotion"),
    "budget_breach": AuditClass(6906, "Budget Breach"),
    "agbom_finding": AuditClass(6907, "AgBOM High-Risk Finding"),
}
"""The kinds of governance record, by the key :func:`record` takes."""

DECISIONS: Final[Mapping[str, tuple[int, str, int, str]]] = {
    # decision: (activity_id, activity_name, status_id, status)
    "allow": (1, "Allow", 1, "Success"),
    "deny": (2, "Deny", 2, "Failure"),
    "approve": (3, "Approve", 1, "Success"),
    "reject": (4, "Reject", 2, "Failure"),
    "override": (5, "Override", 1, "Success"),
    "expire": (6, "Expire", 2, "Failure"),
    "breach": (7, "Breach", 2, "Failure"),
    "finding": (8, "Finding", 99, "Other"),
}

SEVERITIES: Final[Mapping[str, int]] = {
    "Unknown": 0,
    "Informational": 1,
    "Low": 2,
    "Medium": 3,
    "High": 4,
    "Critical": 5,
    "Fatal": 6,
}


@dataclasses.dataclass(frozen=True, slots=True)
class Actor:
    """Who decided: the user the API server authenticated (its userInfo), or :data:`OPERATOR_USER`."""

    name: str
    groups: tuple[str, ...] = ()

    def to_ocsf(self) -> dict[str, Any]:
        return {"user": {"name": self.name, "groups": [{"name": group} for group in self.groups]}}


OPERATOR: Final = Actor(OPERATOR_USER)


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """The object the decision is about."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def of(cls, entry: Entry) -> Resource:
        """The joch object a cache entry holds."""
        model = v1alpha1.kind_named(entry.kind)
        api_version = model.crd.api_version if model is not None else ""
        return cls(api_version, entry.kind, entry.name, entry.namespace, entry.uid or None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    """The policy (or Budget, Approval routing...) that made the decision, when there is one."""

    id: str
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, **({"version": self.version} if self.version else {})}


def _utc(moment: datetime.datetime) -> datetime.datetime:
    """Aware UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def record(
    time: datetime.datetime,
    audit_class: str,
    *,
    actor: Actor,
    resource: Resource,
    decision: str,
    reason: str,
    severity: str = "Informational",
    policy: Policy | None = None,
    product_version: str = "",
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One governance record (unsealed: :meth:`Chain.seal` adds the chain fields).

    ``audit_class`` is a key of :data:`CLASSES`, ``decision`` of :data:`DECISIONS`, ``severity`` of
    :data:`SEVERITIES`; ``details`` (JSON values) go under ``joch.details``. Raises ValueError on an
    unknown class, decision or severity."""
    if audit_class not in CLASSES:
        raise ValueError(f"unknown audit class {audit_class!r} (one of {', '.join(CLASSES)})")
    if decision not in DECISIONS:
        raise ValueError(f"unknown decision {decision!r} (one of {', '.join(DECISIONS)})")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r} (one of {', '.join(SEVERITIES)})")
    kind = CLASSES[audit_class]
    activity_id, activity_name, status_id, status = DECISIONS[decision]
    moment = _utc(time)
    product: dict[str, Any] = {"name": PRODUCT, "vendor_name": PRODUCT}
    if product_version:
        product["version"] = product_version
    joch: dict[str, Any] = {"class": audit_class, "decision": decision, "resource": resource.to_json()}
    if policy is not None:
        joch["policy"] = policy.to_json()
    if details:
        joch["details"] = dict(details)
    return {
        "time": int(moment.timestamp() * 1000),
        "time_dt": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "category_uid": CATEGORY_UID,
        "category_name": CATEGORY_NAME,
        "class_uid": kind.uid,
        "class_name": kind.name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": kind.uid * 100 + activity_id,
        "status_id": status_id,
        "status": status,
        "severity_id": SEVERITIES[severity],
        "severity": severity,
        "message": reason,
        "actor": actor.to_ocsf(),
        "metadata": {"product": product, "version": OCSF_VERSION},
        "joch": joch,
    }


def canonical(value: Mapping[str, Any]) -> str:
    """The one serialization of a record: JSON, sorted keys, no spaces, UTF-8 text (not \\u escapes)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(value: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical record without its ``hash`` field."""
    body = {key: item for key, item in value.items() if key != "hash"}
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def _sequence(value: Mapping[str, Any]) -> int | None:
    metadata = value.get("metadata")
    sequence = metadata.get("sequence") if isinstance(metadata, Mapping) else None
    return sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else None


def is_chained(value: Any) -> bool:
    """Whether a parsed record carries the chain fields (a sequence, a hash and a prev_hash)."""
    return (
        isinstance(value, Mapping)
        and _sequence(value) is not None
        and isinstance(value.get("hash"), str)
        and isinstance(value.get("prev_hash"), str)
    )


@dataclasses.dataclass(slots=True)
class Chain:
    """Where a hash chain stands: the last sequence written and its hash (0 and :data:`ZERO_HASH`
    before the first record)."""

    sequence: int = 0
    last_hash: str = ZERO_HASH

    def seal(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """``value`` as the next record of the chain (with sequence, prev_hash and hash); advances."""
        metadata = dict(value.get("metadata") or {})
        metadata["sequence"] = self.sequence + 1
        body = {key: item for key, item in value.items() if key not in ("hash", "prev_hash")}
        sealed = {**body, "metadata": metadata, "prev_hash": self.last_hash}
        sealed["hash"] = digest(sealed)
        self.sequence, self.last_hash = metadata["sequence"], sealed["hash"]
        return sealed


def last_link(lines: Sequence[str]) -> Chain | None:
    """The chain position after the last chained record among ``lines`` (read from the end; lines
    that do not parse are skipped), or None when none is chained."""
    for line in reversed(lines):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if is_chained(value):
            sequence = _sequence(value)
            assert sequence is not None
            return Chain(sequence, str(value["hash"]))
    return None


# --------------------------------------------------------------------------------------------- verify


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a chained file: the line (1-based), a code and a sentence."""

    line: int
    code: str
    """``unparsable``, ``unchained``, ``changed``, ``removed``, ``reordered`` or ``link``."""
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def _parse_lines(lines: Iterable[str]) -> list[tuple[int, Any]]:
    """(line number, parsed value or the error text) for every non-blank line."""
    out: list[tuple[int, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            out.append((number, json.loads(line)))
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            out.append((number, _Unparsable(f"{type(exc).__name__}: {str(exc)[:120]}")))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class _Unparsable:
    error: str


def _span(first: int, last: int) -> str:
    return f"record {first} is" if first == last else f"records {first}..{last} are"


def verify(lines: Iterable[str]) -> list[Problem]:
    """Every problem of a hash-chained audit file, in line order (none: the chain is intact).

    - a line that is not JSON (``unparsable``) or is a record without the chain fields (``unchained``);
    - a record whose ``hash`` is not the hash of its content: it was changed (``changed``);
    - a sequence that skips numbers no line holds: records were removed (``removed``);
    - a sequence not above every earlier one, or one that skips numbers a later line holds: the record
      was moved (``reordered``);
    - a ``prev_hash`` that is not the ``hash`` of the record with the sequence before: that record was
      replaced or changed with its hash recomputed (``link``).

    The last records of a file can be cut off without a trace: anchor the newest hash elsewhere (a
    copy, a log shipper) to detect truncation."""
    parsed = _parse_lines(lines)
    present = {sequence for _, value in parsed if (sequence := _seq_of(value)) is not None}
    hashes: dict[int, str] = {}
    highest = 0
    problems: list[Problem] = []
    for position, (number, value) in enumerate(parsed):
        if isinstance(value, _Unparsable):
            problems.append(Problem(number, "unparsable", f"does not parse as JSON ({value.error})"))
            continue
        if not is_chained(value):
            problems.append(Problem(number, "unchained", "not a chained record (no metadata.sequence/hash)"))
            continue
        sequence = _sequence(value)
        assert sequence is not None
        stored = str(value["hash"])
        if digest(value) != stored:
            problems.append(Problem(number, "changed", "hash mismatch: the record was changed"))
        if sequence <= highest:
            what = "duplicated" if sequence in hashes else "moved"
            problems.append(
                Problem(number, "reordered", f"out of order: sequence {sequence} after {highest} ({what})")
            )
        elif sequence > highest + 1:
            later = {_seq_of(v) for _, v in parsed[position + 1 :]}
            missing = [s for s in range(highest + 1, sequence) if s not in present]
            if missing:
                problems.append(
                    Problem(
                        number,
                        "removed",
                        f"sequence gap: {_span(missing[0], missing[-1])} missing before sequence {sequence} "
                        "(removed)",
                    )
                )
            elif any(s in later for s in range(highest + 1, sequence)):
                problems.append(
                    Problem(
                        number,
                        "reordered",
                        f"out of order: sequence {sequence} comes before {highest + 1} (moved)",
                    )
                )
        before = ZERO_HASH if sequence == 1 else hashes.get(sequence - 1)
        if before is not None and value["prev_hash"] != before:
            problems.append(
                Problem(
                    number,
                    "link",
                    f"prev_hash mismatch: it is not the hash of record {sequence - 1} (that record was "
                    "replaced, or changed and its hash recomputed)",
                )
            )
        hashes.setdefault(sequence, stored)
        highest = max(highest, sequence)
    return problems


def _seq_of(value: Any) -> int | None:
    return _sequence(value) if is_chained(value) else None
