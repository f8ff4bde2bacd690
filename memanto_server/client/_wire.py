"""Small pure helpers of the wire format: the base URL, times, path segments, request bodies."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

API_PREFIX = "/api/v2"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def normalize_base_url(base_url: str) -> str:
    """`http://host:8000`: no trailing slash, and no `/api/v2` (the client adds it)."""
    url = base_url.strip().rstrip("/")
    return url.removesuffix(API_PREFIX).rstrip("/") or url


def parse_time(value: str | datetime | None) -> datetime | None:
    """An aware UTC datetime from the API's ISO-8601 `Z` strings (None when unreadable)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def wire_time(value: str | datetime) -> str:
    """A time as the server reads it (`created_after`, `occurred_at`, `as_of`, …): in UTC, a
    naive datetime or a string without an offset taken as UTC, a date as its midnight. A string
    that is no ISO-8601 time is sent as given, for the server to refuse it with its reason."""
    moment = parse_time(value)
    if moment is None:
        assert isinstance(value, str)
        return value
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def optional_time(value: str | datetime | None) -> str | None:
    """`wire_time`, or None for a time left out."""
    return None if value is None else wire_time(value)


# The fields of a memory that hold a time of the caller's choosing.
MEMORY_TIME_FIELDS = ("occurred_at", "valid_until")


def with_wire_times(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A memory's fields with its datetimes in the wire form (`None` kept: it clears `valid_until`)."""
    return {k: wire_time(v) if k in MEMORY_TIME_FIELDS and v is not None else v for k, v in fields.items()}


def segment(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(str(value), safe="")


def drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A request body without the fields left out (the server applies its defaults)."""
    return {k: v for k, v in fields.items() if v is not None}
