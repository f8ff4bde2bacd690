"""Where this run's Postgres and Redis are, and the run's own id (database name, key prefix)."""

from __future__ import annotations

import os
import secrets

PG_SERVER_URL = os.environ.get("MEMANTO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")


REDIS_URL = os.environ.get("MEMANTO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


RUN_ID = secrets.token_hex(4)
