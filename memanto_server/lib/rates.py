"""Rates: `amount` requests in any window of `window_seconds`, and the grammar that writes them."""

from __future__ import annotations

import re

import msgspec

_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
# What `MEMANTO_RATE_LIMIT` accepts: `600/minute`, `10 per second`, `100/5 minutes`.
_RATE = re.compile(
    r"^\s*(?P<amount>[1-9][0-9]*)\s*(?:/|\s+per\s+)\s*(?:(?P<multiple>[1-9][0-9]*)\s*)?"
    r"(?P<unit>second|minute|hour|day)s?\s*$",
    re.IGNORECASE,
)


class Rate(msgspec.Struct, frozen=True):
    """`amount` requests in any `window_seconds`."""

    amount: int
    window_seconds: int

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.match(text)
        if match is None:
            raise ValueError(f"not a rate limit: {text!r} (expected COUNT/UNIT, e.g. 600/minute or 100/5 minutes)")
        multiple = int(match["multiple"] or 1)
        return cls(int(match["amount"]), multiple * _UNIT_SECONDS[match["unit"].lower()])
