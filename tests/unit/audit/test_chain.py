"""The hash chain (joch.domain.audit.Chain, verify): a changed, a removed, a reordered record and a bad
line are each named by their line; an intact chain has no problem."""

from __future__ import annotations

import datetime
import json

from joch.domain import audit

WHEN = datetime.datetime(2026, 11, 27, 12, 0, tzinfo=datetime.UTC)


def lines(count: int, chain: audit.Chain | None = None) -> list[str]:
    chain = chain if chain is not None else audit.Chain()
    out = []
    for index in range(count):
        record = audit.record(
            WHEN + datetime.timedelta(seconds=index),
            "promotion",
            actor=audit.Actor("alice"),
            resource=audit.Resource("joch.ai/v1alpha1", "Deployment", f"d{index}", "ns"),
            decision="allow",
            reason=f"promotion {index}",
        )
        out.append(audit.canonical(chain.seal(record)))
    return out


def codes(problems: list[audit.Problem]) -> list[tuple[int, str]]:
    return [(p.line, p.code) for p in problems]


def test_sealing_numbers_and_links_the_records() -> None:
    first, second = (json.loads(line) for line in lines(2))
    assert first["metadata"]["sequence"] == 1
    assert first["prev_hash"] == audit.ZERO_HASH
    assert second["metadata"]["sequence"] == 2
    assert second["prev_hash"] == first["hash"]
    assert first["hash"] == audit.digest(first)
    assert len(first["hash"]) == 64


def test_an_intact_chain_has_no_problem() -> None:
    assert audit.verify(lines(5)) == []
    assert audit.verify([*lines(3), "", "  "]) == []  # blank lines are not records
    assert audit.verify([]) == []


def test_a_changed_record_is_a_hash_mismatch() -> None:
    chain = lines(5)
    record = json.loads(chain[2])
    record["message"] = "nothing to see"
    chain[2] = audit.canonical(record)
    problems = audit.verify(chain)
    assert codes(problems) == [(3, "changed")]
    assert str(problems[0]) == "line 3: hash mismatch: the record was changed"


def test_a_changed_record_with_its_hash_recomputed_breaks_the_next_link() -> None:
    chain = lines(5)
    record = json.loads(chain[1])
    record["actor"]["user"]["name"] = "mallory"
    record["hash"] = audit.digest(record)
    chain[1] = audit.canonical(record)
    assert codes(audit.verify(chain)) == [(3, "link")]


def test_a_removed_record_is_a_sequence_gap() -> None:
    chain = lines(5)
    del chain[2]
    problems = audit.verify(chain)
    assert codes(problems) == [(3, "removed")]
    assert "record 3 is missing" in problems[0].reason
    first_gone = lines(3)[1:]
    assert codes(audit.verify(first_gone)) == [(1, "removed")]


def test_a_reordered_record_is_out_of_order() -> None:
    chain = lines(5)
    chain[2], chain[3] = chain[3], chain[2]
    problems = audit.verify(chain)
    assert codes(problems) == [(3, "reordered"), (4, "reordered")]
    moved = lines(5)
    moved.append(moved.pop(1))  # record 2 moved to the end
    assert next(line for line, _ in codes(audit.verify(moved))) == 2


def test_a_bad_line_is_named_and_the_chain_goes_on() -> None:
    chain = lines(4)
    chain[1] = chain[1][:40]  # cut off mid-record
    problems = audit.verify(chain)
    assert codes(problems) == [(2, "unparsable"), (3, "removed")]
    assert problems[0].reason.startswith("does not parse as JSON")
    chain = lines(3)
    chain.insert(1, '{"not": "chained"}')
    assert codes(audit.verify(chain)) == [(2, "unchained")]


def test_a_duplicate_is_out_of_order() -> None:
    chain = lines(3)
    chain.append(chain[1])
    problems = audit.verify(chain)
    assert codes(problems) == [(4, "reordered")]
    assert "duplicated" in problems[0].reason


def test_last_link_resumes_after_the_last_chained_record() -> None:
    chain = lines(3)
    resumed = audit.last_link([*chain, "{broken"])
    assert resumed is not None
    assert (resumed.sequence, resumed.last_hash) == (3, json.loads(chain[-1])["hash"])
    assert audit.verify([*chain, *lines(2, resumed)]) == []
    assert audit.last_link(['{"a": 1}', ""]) is None
