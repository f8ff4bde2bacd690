"""Every limit of the API, stated once.

The request schemas (msgspec `Meta`), the controllers' query and header parameters and the
services all read their bounds from here, so that the OpenAPI document, the validation and
the rules cannot drift apart. Nothing here imports the rest of the package.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, NamedTuple

import msgspec

# Postgres cannot store a NUL character in text; refused wherever text comes in.
NO_NUL = r"^[^\x00]*$"
NO_NUL_NON_EMPTY = r"^[^\x00]+$"

# Memories.
MAX_CONTENT_CHARS = 10_000
MAX_TITLE_CHARS = 100
MAX_SOURCE_CHARS = 200
MAX_TAGS = 20
MAX_TAG_CHARS = 64
MAX_METADATA_BYTES = 4096  # of the metadata object encoded as JSON
MAX_BATCH = 100
MAX_IDEMPOTENCY_KEY_CHARS = 200

# Agents. `$` alone would also match before a final newline ("abc\n"); the lookahead forbids
# it and, unlike `\Z`, is also understood by the JavaScript regexes of OpenAPI tools.
MAX_AGENT_ID_CHARS = 64
AGENT_ID_PATTERN = rf"^[A-Za-z0-9_-]{{1,{MAX_AGENT_ID_CHARS}}}$(?!\n)"
# A memory id is a UUID (36 characters); a longer path segment is refused, a shorter one not found.
MAX_MEMORY_ID_CHARS = 64
MAX_DESCRIPTION_CHARS = 1000

# Searches: a recall query, an answer's question.
MAX_QUERY_CHARS = 1000


class Page(NamedTuple):
    """The `limit` of a route that answers in pages: its least, most and default value."""

    least: int
    most: int
    default: int


RECALL_PAGE = Page(1, 100, 10)
MEMORY_PAGE = Page(1, 100, 20)
ANSWER_SOURCES = Page(1, 20, 5)
AGENT_PAGE = Page(1, 100, 50)
HISTORY_PAGE = Page(1, 100, 20)
# Cursors are opaque base64url text (no padding) that the client hands back unchanged.
MAX_CURSOR_CHARS = 1024
CURSOR_PATTERN = r"^[A-Za-z0-9_-]*$"

# Session lengths, in hours. The largest a request may name is a setting
# (MEMANTO_SESSION_MAX_HOURS, MEMANTO_EXTEND_MAX_HOURS); MAX_HOURS bounds the settings, so
# that every duration stays finite. A session shorter than a second is no session.
MIN_HOURS = 1 / 3600
MAX_HOURS = 87_600.0

# JSON bodies: nesting deeper than this is refused before anything walks it.
MAX_JSON_DEPTH = 32

# One HTTP connection (the server protocol's own limits; settings may change them).
MAX_HEADER_BYTES = 16_384
MAX_HEADERS = 100
HEADER_TIMEOUT_SECONDS = 10.0
BODY_TIMEOUT_SECONDS = 30.0
KEEP_ALIVE_TIMEOUT_SECONDS = 5

# The same bounds as msgspec types, for the request schemas.
Content = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CONTENT_CHARS, pattern=NO_NUL)]
Title = Annotated[str, msgspec.Meta(max_length=MAX_TITLE_CHARS, pattern=NO_NUL)]
Source = Annotated[str, msgspec.Meta(max_length=MAX_SOURCE_CHARS, pattern=NO_NUL)]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TAG_CHARS, pattern=NO_NUL_NON_EMPTY)]
Tags = Annotated[list[Tag], msgspec.Meta(max_length=MAX_TAGS)]
Confidence = Annotated[float, msgspec.Meta(ge=0, le=1)]
Score = Annotated[float, msgspec.Meta(ge=0, le=1)]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_QUERY_CHARS, pattern=NO_NUL_NON_EMPTY)]
Cursor = Annotated[
    str,
    msgspec.Meta(
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description="`next_cursor` of the previous page, unchanged (opaque base64url text).",
    ),
]
IdempotencyKey = Annotated[
    str, msgspec.Meta(min_length=1, max_length=MAX_IDEMPOTENCY_KEY_CHARS, pattern=NO_NUL_NON_EMPTY)
]
AgentId = Annotated[str, msgspec.Meta(pattern=AGENT_ID_PATTERN, description="1-64 of A-Z a-z 0-9 _ -")]
Description = Annotated[str, msgspec.Meta(max_length=MAX_DESCRIPTION_CHARS, pattern=NO_NUL)]
Hours = Annotated[
    float,
    msgspec.Meta(
        ge=MIN_HOURS,
        le=MAX_HOURS,
        description="Hours, fractions allowed; at least one second. The most a request may name is set by the "
        "server (24 by default).",
    ),
]
# Times are RFC 3339 with a UTC offset (`2026-03-30T16:30:00Z`): never a bare number, never naive.
Instant = Annotated[datetime, msgspec.Meta(tz=True)]

RecallLimit = Annotated[int, msgspec.Meta(ge=RECALL_PAGE.least, le=RECALL_PAGE.most)]
AnswerLimit = Annotated[int, msgspec.Meta(ge=ANSWER_SOURCES.least, le=ANSWER_SOURCES.most)]
