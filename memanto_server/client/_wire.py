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
    """What the server reads for `created_after`/`created_before` (naive datetimes are taken as UTC)."""
    if isinstance(value, str):
        return value
    moment = parse_time(value)
    assert moment is not None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def segment(value: str) -> str:
    """One path segment, percent-encoded."""
    return quote(str(value), safe="")


def drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A request body without the fields left out (the server applies its defaults)."""
    return {k: v for k, v in fields.items() if v is not None}
