"""Text that Postgres can store: no NUL characters, anywhere in a value."""

from __future__ import annotations

from memanto_server.errors import InvalidInput


def has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(has_nul(v) for v in value)
    return False


def reject_nul(value: object, field: str) -> None:
    # A string, the usual value, is looked at here; a container is walked by has_nul.
    if ("\x00" in value) if type(value) is str else (value is not None and has_nul(value)):
        raise InvalidInput.field(field, "must not contain NUL characters")
