"""RFC 3339 times as the API server writes them (pure): parsing and formatting, one copy for every service."""

from __future__ import annotations

import datetime
from typing import Any

__all__ = ["format_time", "parse_time"]


def parse_time(value: Any) -> datetime.datetime | None:
    """An aware datetime from an RFC 3339 string (``Z`` or an offset; a naive one is read as UTC); None
    for anything else."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=datetime.UTC)


def format_time(moment: datetime.datetime) -> str:
    """``moment`` in UTC to the second, as ``2026-11-27T12:00:00Z``."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
