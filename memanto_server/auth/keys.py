"""API key material: generated once, shown once, stored only as a hash.

Keys carry 256 bits of randomness, so a plain SHA-256 is the right storage: a slow
password hash guards low-entropy secrets and would only cost every uncached lookup.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "mk_"


def generate_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    """Enough of a key to recognise it in `keys list`, not enough to use it."""
    return key[: len(KEY_PREFIX) + 6]
