"""Opaque keyset cursors: base64url JSON that the client hands back unchanged.

Each kind of cursor is a Struct, so a cursor that was not issued by this server (or was
edited) fails to decode and is answered with 422, never used half-understood.
"""

from __future__ import annotations

import base64
from typing import TypeVar

import msgspec

from memanto_server.errors import InvalidInput

C = TypeVar("C", bound=msgspec.Struct)


def encode_cursor(position: msgspec.Struct) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(position)).rstrip(b"=").decode()


def decode_cursor(cursor: str | None, shape: type[C]) -> C | None:
    if cursor is None:
        return None
    try:
        return msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), type=shape)
    except (ValueError, msgspec.DecodeError):
        raise InvalidInput.field("cursor", "not a cursor this server issued", "query") from None
