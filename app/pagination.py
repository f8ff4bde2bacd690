"""Opaque keyset cursors: base64url JSON that the client hands back unchanged."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from app.errors import InvalidInput


def encode_cursor(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    if cursor is None:
        return None
    try:
        position = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, msgspec.DecodeError):
        position = None
    if not isinstance(position, dict) or not all(key in position for key in keys):
        raise InvalidInput.field("cursor", "not a cursor this server issued", "query")
    return position
