"""``joch audit verify FILE``: check the hash chain of a governance audit log (docs/audit.md).

Reads the file the operator wrote with ``--audit-log FILE --audit-hash-chain`` and checks every record
(joch.domain.audit.verify): its hash, its sequence, its link to the record before.

Exit codes: 0 the chain is intact (``FILE: N records, hash chain intact``); 1 problems, one line each
(``line 7: hash mismatch: the record was changed``), or a file written without the hash chain (nothing to
verify); 2 the file is missing or unreadable, or usage errors.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Final, TextIO

from joch.domain import audit as records

__all__ = ["register", "verify_file"]

EXIT_OK: Final = 0
EXIT_PROBLEMS: Final = 1
EXIT_UNREADABLE: Final = 2


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "audit",
        help="governance audit log: verify its hash chain",
        description="Work with the operator's governance audit log (--audit-log, docs/audit.md).",
    )
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    verify = actions.add_parser(
        "verify",
        help="check the hash chain of an audit log file",
        description="Check every record of an audit log written with --audit-hash-chain: its hash, its "
        "sequence and its link to the record before. Exit 0 intact, 1 problems (one line each) or a file "
        "without the hash chain, 2 a missing or unreadable file.",
    )
    verify.add_argument("file", metavar="FILE", help="the audit log (JSON lines)")
    verify.set_defaults(handler=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    return verify_file(args.file)


def verify_file(path: str, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Verify ``path``, print the verdict, return the exit code (see the module docstring)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as stream:
            lines = stream.read().splitlines()
    except OSError as exc:
        err.write(f"joch audit verify: cannot read {path}: {exc.strerror or exc}\n")
        return EXIT_UNREADABLE
    count = sum(1 for line in lines if line.strip())
    problems = records.verify(lines)
    unchained = [p for p in problems if p.code == "unchained"]
    if count and len(unchained) == count:
        out.write(
            f"{path}: {count} records, none hash-chained (written without --audit-hash-chain): nothing to "
            "verify\n"
        )
        return EXIT_PROBLEMS
    if not problems:
        out.write(f"{path}: {count} records, hash chain intact\n")
        return EXIT_OK
    for problem in problems:
        out.write(f"{problem}\n")
    out.write(f"{path}: {count} records, {len(problems)} problem{'s' if len(problems) != 1 else ''}\n")
    return EXIT_PROBLEMS
