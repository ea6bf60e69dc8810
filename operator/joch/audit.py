"""The governance audit log: one JSON line per governance record (joch.domain.audit), to a file or a stream.

:func:`open_log` gives the operator's log from its ``--audit-log`` / ``--audit-hash-chain`` flags:
:data:`NULL` when there is no path (disabled), a :class:`GovernanceLog` on stdout for ``-``, else one
appending to the file. With the hash chain, a file that already holds chained records is continued: the
log reads the last chained record (its ``metadata.sequence`` and ``hash``) when it opens, so a restarted
operator extends the same chain. A last line left half-written by a crash is ended with a newline first
(``joch audit verify`` then names it as a line that does not parse; the chain continues from the record
before it).

Writes are synchronous, under a lock (webhook handlers and controller workers share one log) and flushed
line by line. A write that fails (disk full, a removed mount) is logged once and dropped: an audit log
must never take the admission webhooks or the controllers down. A path that cannot be opened at start
raises :class:`AuditLogError`.
"""

from __future__ import annotations

import datetime
import io
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol, TextIO

from joch import __version__
from joch.domain import audit as records

__all__ = ["NULL", "AuditLog", "AuditLogError", "GovernanceLog", "NullLog", "open_log"]

logger = logging.getLogger("joch.audit")

STDOUT: Final = "-"
_TAIL_CHUNK: Final = 64 * 1024


class AuditLogError(Exception):
    """The audit log cannot be opened (or its existing chain read)."""


class AuditLog(Protocol):
    """What the emitters call (a :class:`GovernanceLog`, or :data:`NULL`)."""

    @property
    def enabled(self) -> bool: ...

    def record(
        self,
        audit_class: str,
        *,
        actor: records.Actor,
        resource: records.Resource,
        decision: str,
        reason: str,
        severity: str = "Informational",
        policy: records.Policy | None = None,
        details: Mapping[str, Any] | None = None,
        time: datetime.datetime | None = None,
    ) -> None: ...

    def close(self) -> None: ...


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class GovernanceLog:
    """Appends governance records as JSON lines, optionally hash-chained (see the module docstring)."""

    enabled: Final = True

    def __init__(
        self,
        stream: TextIO,
        *,
        hash_chain: bool = False,
        chain: records.Chain | None = None,
        clock: Callable[[], datetime.datetime] = _utcnow,
        owned: bool = False,
        name: str = "",
    ) -> None:
        self.stream = stream
        self.hash_chain = hash_chain
        self.chain = chain if chain is not None else records.Chain()
        self.clock = clock
        self.name = name or getattr(stream, "name", "") or "the audit stream"
        self.written = 0
        self.dropped = 0
        self._owned = owned
        self._lock = threading.Lock()
        self._failed = False

    @classmethod
    def open(
        cls, path: str, *, hash_chain: bool = False, clock: Callable[[], datetime.datetime] = _utcnow
    ) -> GovernanceLog:
        """A log appending to ``path`` (created if missing), continuing its chain; raises AuditLogError."""
        try:
            chain, needs_newline = _resume(path) if os.path.exists(path) else (None, False)
            stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - owned by the log, closed by close()
            if needs_newline:
                stream.write("\n")
                stream.flush()
        except OSError as exc:
            raise AuditLogError(f"cannot open the audit log {path}: {exc.strerror or exc}") from exc
        if chain is not None and hash_chain:
            logger.info("audit log %s: continuing the hash chain after record %d", path, chain.sequence)
        return cls(stream, hash_chain=hash_chain, chain=chain, clock=clock, owned=True, name=path)

    def record(
        self,
        audit_class: str,
        *,
        actor: records.Actor,
        resource: records.Resource,
        decision: str,
        reason: str,
        severity: str = "Informational",
        policy: records.Policy | None = None,
        details: Mapping[str, Any] | None = None,
        time: datetime.datetime | None = None,
    ) -> None:
        """Build one record (joch.domain.audit.record, now unless ``time``) and write it."""
        self.write(
            records.record(
                time or self.clock(),
                audit_class,
                actor=actor,
                resource=resource,
                decision=decision,
                reason=reason,
                severity=severity,
                policy=policy,
                product_version=__version__,
                details=details,
            )
        )

    def write(self, value: Mapping[str, Any]) -> None:
        """Append one record (sealed into the chain when it is on). Never raises OSError."""
        with self._lock:
            sealed = self.chain.seal(value) if self.hash_chain else dict(value)
            line = records.canonical(sealed) + "\n"
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError) as exc:  # ValueError: the stream was closed
                self.dropped += 1
                if not self._failed:
                    self._failed = True
                    logger.error("cannot write the audit log %s (records are dropped): %s", self.name, exc)
                return
            self.written += 1
            if self._failed:
                self._failed = False
                logger.warning("audit log %s is written again (%d records dropped)", self.name, self.dropped)

    def close(self) -> None:
        with self._lock:
            if self._owned and not self.stream.closed:
                try:
                    self.stream.close()
                except OSError as exc:
                    logger.error("cannot close the audit log %s: %s", self.name, exc)


class NullLog:
    """The disabled log: same interface, writes nothing."""

    enabled: Final = False

    def record(self, audit_class: str, **_: Any) -> None:
        del audit_class

    def write(self, value: Mapping[str, Any]) -> None:
        del value

    def close(self) -> None:
        pass


NULL: Final = NullLog()


def open_log(path: str | None, *, hash_chain: bool = False) -> GovernanceLog | NullLog:
    """The operator's log for ``--audit-log PATH`` (None: :data:`NULL`; ``-``: stdout)."""
    if not path:
        return NULL
    if path == STDOUT:
        return GovernanceLog(sys.stdout, hash_chain=hash_chain, name="stdout")
    return GovernanceLog.open(path, hash_chain=hash_chain)


def _resume(path: str) -> tuple[records.Chain | None, bool]:
    """The chain after the last chained record of ``path`` and whether its last line lacks a newline;
    read from the end, a chunk at a time."""
    with open(path, "rb") as stream:
        stream.seek(0, io.SEEK_END)
        size = stream.tell()
        if size == 0:
            return None, False
        stream.seek(size - 1)
        needs_newline = stream.read(1) != b"\n"
        end, tail = size, b""
        while end > 0:
            start = max(0, end - _TAIL_CHUNK)
            stream.seek(start)
            tail = stream.read(end - start) + tail
            end = start
            text = tail.decode("utf-8", errors="replace")
            lines = text.splitlines()
            if end > 0:
                lines = lines[1:]  # the first may be cut: the rest are whole
            chain = records.last_link(lines)
            if chain is not None:
                return chain, needs_newline
    return None, needs_newline
