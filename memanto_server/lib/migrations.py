"""The migration runner: plain SQL files in `migrations/`, applied in order, each once.

Safe to run from several processes at once: database creation and the migrations
themselves each run under a Postgres advisory lock, and a changed file that was
already applied stops the run (its checksum no longer matches).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

logger = logging.getLogger("memanto.migrations")

# Arbitrary constants naming our advisory locks (pg_advisory_lock takes a bigint).
CREATE_DATABASE_LOCK = 0x6D656D616E746F01
MIGRATE_LOCK = 0x6D656D616E746F02

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
APPLIED_MIGRATIONS = "SELECT version, checksum FROM schema_migrations"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)"
DATABASE_EXISTS = "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)"
TAKE_LOCK = "SELECT pg_advisory_lock($1)"
RELEASE_LOCK = "SELECT pg_advisory_unlock($1)"


class MigrationError(Exception):
    pass


class Migration(msgspec.Struct, frozen=True):
    version: str
    path: Path
    sql: str
    checksum: str


def migrations_dir() -> Path:
    configured = os.environ.get("MEMANTO_MIGRATIONS_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "migrations"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        sql = path.read_text()
        found.append(Migration(path.stem, path, sql, hashlib.sha256(sql.encode()).hexdigest()))
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def _database_name(url: str) -> str:
    name = urlsplit(url).path.lstrip("/")
    if not name:
        raise MigrationError("the database URL names no database")
    return name


def _maintenance_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/postgres"))


async def ensure_database(url: str) -> bool:
    """Create the database if it is missing; True when this call created it."""
    name = _database_name(url)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(_maintenance_url(url), timeout=10)
    try:
        await conn.execute(TAKE_LOCK, CREATE_DATABASE_LOCK)
        try:
            if await conn.fetchval(DATABASE_EXISTS, name):
                return False
            # An identifier cannot be a bind parameter; quote it as Postgres would.
            quoted = '"' + name.replace('"', '""') + '"'
            await conn.execute(f"CREATE DATABASE {quoted}")
            logger.info("created database %s", name)
            return True
        finally:
            await conn.execute(RELEASE_LOCK, CREATE_DATABASE_LOCK)
    finally:
        await conn.close()


async def apply_migrations(url: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations; return the versions this call applied."""
    migrations = load_migrations(directory)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(url, timeout=10)
    applied_now: list[str] = []
    try:
        await conn.execute(TAKE_LOCK, MIGRATE_LOCK)
        try:
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            applied = {row["version"]: row["checksum"] for row in await conn.fetch(APPLIED_MIGRATIONS)}
            for migration in migrations:
                if migration.version in applied:
                    if applied[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.path.name} changed after it was applied; "
                            "add a new migration instead of editing an old one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(RECORD_MIGRATION, migration.version, migration.checksum)
                applied_now.append(migration.version)
                logger.info("applied migration %s", migration.path.name)
        finally:
            await conn.execute(RELEASE_LOCK, MIGRATE_LOCK)
    finally:
        await conn.close()
    return applied_now


async def migrate(url: str, directory: Path | None = None) -> list[str]:
    await ensure_database(url)
    return await apply_migrations(url, directory)
