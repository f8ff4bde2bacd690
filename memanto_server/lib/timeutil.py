"""Wall-clock helpers: the API speaks ISO-8601 UTC with a `Z`; Redis keeps milliseconds."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_z(moment: datetime | int) -> str:
    """`2026-03-30T16:30:00Z` (second precision; milliseconds dropped)."""
    seconds = moment // 1000 if isinstance(moment, int) else int(moment.timestamp() // 1)
    return _iso_seconds(seconds)


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:
    # Every request of a session answers with the same few instants (created, expires).
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def human_duration(seconds: float) -> str:
    """`2h 15m`, `45m`, `40s`, as the documented CLI prints durations."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"
