"""The migration runner: plain SQL files in `migrations/`, applied in order, each once.

Safe to run from several processes at once: database creation and the migrations
themselves each run under a Postgres advisory lock, and a changed file that was
already applied stops the run (its checksum no longer matches).

A file is applied in one transaction with its record, unless its first lines say
`-- memanto:no-transaction`: then its statements (each ending with `;` at the end of a
line) run one by one outside any transaction, as `CREATE INDEX CONCURRENTLY` must, and
it is recorded after the last one. Such a file must be safe to run again from the top
(`IF NOT EXISTS`, and dropping an index a failed concurrent build left invalid).

A line `-- memanto:requires NAME >= VERSION` says which extension version a file needs;
every pending file's needs (and the extensions it creates) are checked before anything
is applied, so a server without them gets one clear message, not a half-run upgrade.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
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
# The migration lock is waited for by polling: a session blocked in pg_advisory_lock holds a
# snapshot, and CREATE INDEX CONCURRENTLY in the holder's session waits for every older
# snapshot to go, so a blocked second migrator and the holder would wait for each other.
TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
RELEASE_LOCK = "SELECT pg_advisory_unlock($1)"
# Which of the named extensions this server can install, and their default versions.
AVAILABLE_EXTENSIONS = "SELECT name, default_version FROM pg_available_extensions WHERE name = ANY($1::text[])"
SERVER_VERSION = "SELECT current_setting('server_version')"

NO_TRANSACTION = "-- memanto:no-transaction"
REQUIRES = re.compile(r"^--\s*memanto:requires\s+(\w+)\s*>=\s*([\d.]+)\s*$", re.MULTILINE)
CREATES_EXTENSION = re.compile(r"CREATE\s+EXTENSION\s+IF\s+NOT\s+EXISTS\s+(\w+)", re.IGNORECASE)
LOCK_POLL_SECONDS = 0.2

# Files edited after release in a way that changes nothing for a database that applied them,
# with the checksums of their earlier texts (accepted as well as the current one):
# 0001 no longer creates pgcrypto, whose gen_random_uuid() has been in core since Postgres 13
# (servers such as the embedded one have no pgcrypto); where it was created it stays, unused.
FORMER_CHECKSUMS = {
    "0001_owners_agents_sessions_memories": {"5d4153270d20b604b541c2bbb9c142c6106a6a34de7a6a4d1c06062dc5ab2b91"},
}


class MigrationError(Exception):
    pass


class Migration(msgspec.Struct, frozen=True):
    version: str
    path: Path
    sql: str
    checksum: str

    @property
    def in_transaction(self) -> bool:
        return not any(line.strip() == NO_TRANSACTION for line in self.sql.splitlines()[:5])

    def statements(self) -> list[str]:
        """The statements of a no-transaction file: each ends with `;` at the end of a line."""
        statements, current = [], []
        for line in self.sql.splitlines():
            current.append(line)
            if line.rstrip().endswith(";"):
                statement = _without_comments("\n".join(current))
                if statement:
                    statements.append(statement)
                current = []
        if _without_comments("\n".join(current)):
            raise MigrationError(f"{self.path.name}: the last statement does not end with ';'")
        return statements

    def accepts(self, recorded_checksum: str) -> bool:
        return recorded_checksum == self.checksum or recorded_checksum in FORMER_CHECKSUMS.get(self.version, ())


def _without_comments(sql: str) -> str:
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--")).strip()


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


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


async def _take_migration_lock(conn: asyncpg.Connection[Any]) -> None:
    while not await conn.fetchval(TRY_LOCK, MIGRATE_LOCK):  # noqa: ASYNC110 - the lock is in Postgres
        await asyncio.sleep(LOCK_POLL_SECONDS)


async def check_extensions(conn: asyncpg.Connection[Any], pending: list[Migration]) -> None:
    """Refuse, before applying anything, when the server lacks an extension a pending file needs."""
    needs: dict[str, tuple[str, str]] = {}  # extension -> (minimum version, file)
    for migration in pending:
        for name in CREATES_EXTENSION.findall(migration.sql):
            needs.setdefault(name, ("0", migration.path.name))
        for name, minimum in REQUIRES.findall(migration.sql):
            needs[name] = (minimum, migration.path.name)
    if not needs:
        return
    available = {row["name"]: row["default_version"] for row in await conn.fetch(AVAILABLE_EXTENSIONS, list(needs))}
    problems = []
    for name, (minimum, file) in sorted(needs.items()):
        have = available.get(name)
        if have is None:
            problems.append(f"the extension {name!r} is not available on this server (needed by {file})")
        elif _version_tuple(have) < _version_tuple(minimum):
            problems.append(f"the extension {name!r} is version {have}; {file} needs {minimum} or later")
    if problems:
        server = await conn.fetchval(SERVER_VERSION)
        raise MigrationError(
            f"Postgres {server} cannot run the pending migrations: "
            + "; ".join(problems)
            + ". Memanto needs Postgres with pgvector >= 0.8, pg_trgm and fuzzystrmatch "
            "(docs/operations.md, 'Postgres'); the pgvector/pgvector Docker images have them."
        )


async def _apply(conn: asyncpg.Connection[Any], migration: Migration) -> None:
    try:
        if migration.in_transaction:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(RECORD_MIGRATION, migration.version, migration.checksum)
            return
        for statement in migration.statements():
            await conn.execute(statement)
        await conn.execute(RECORD_MIGRATION, migration.version, migration.checksum)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.path.name}: {type(exc).__name__}: {exc}") from exc


async def apply_migrations(url: str, directory: Path | None = None) -> list[str]:
    """Apply the pending migrations; return the versions this call applied."""
    migrations = load_migrations(directory)
    conn: asyncpg.Connection[Any] = await asyncpg.connect(url, timeout=10)
    applied_now: list[str] = []
    try:
        await _take_migration_lock(conn)
        try:
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            applied = {row["version"]: row["checksum"] for row in await conn.fetch(APPLIED_MIGRATIONS)}
            for migration in migrations:
                if migration.version in applied and not migration.accepts(applied[migration.version]):
                    raise MigrationError(
                        f"migration {migration.path.name} changed after it was applied; "
                        "add a new migration instead of editing an old one"
                    )
            pending = [m for m in migrations if m.version not in applied]
            await check_extensions(conn, pending)
            for migration in pending:
                await _apply(conn, migration)
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
