"""The migration runner: files without a transaction (CREATE INDEX CONCURRENTLY), the lock, checksums,
extension checks; on databases of the test's own (migration folders written by the test)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from memanto_server.lib.migrations import FORMER_CHECKSUMS, MigrationError, load_migrations, migrate, migrations_dir
from tests.helpers.backends import RUN_ID

_numbers = itertools.count(1)

TABLE = """
CREATE TABLE items (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 2000) AS i;
"""
CONCURRENT_INDEX = """-- memanto:no-transaction
-- A failed concurrent build leaves an invalid index: drop it first.
DROP INDEX CONCURRENTLY IF EXISTS items_body;
CREATE INDEX CONCURRENTLY items_body ON items (body);
"""


@pytest.fixture
async def new_database(postgres_server_url: str) -> AsyncIterator[Callable[[], str]]:
    names: list[str] = []

    def make() -> str:
        names.append(f"memanto_mig_{RUN_ID}_{next(_numbers)}")
        return f"{postgres_server_url}/{names[-1]}"

    yield make
    conn = await asyncpg.connect(f"{postgres_server_url}/postgres")
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def folder(tmp_path: Path, **files: str) -> Path:
    for name, sql in files.items():
        (tmp_path / f"{name}.sql").write_text(sql)
    return tmp_path


async def fetch(url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def index_state(url: str, name: str) -> list[tuple[str, bool]]:
    rows = await fetch(
        url,
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1",
        name,
    )
    return [(r["relname"], r["indisvalid"]) for r in rows]


async def test_a_no_transaction_migration_builds_its_index_concurrently_and_is_recorded_once(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    directory = folder(tmp_path, **{"0001_items": TABLE, "0002_items_body": CONCURRENT_INDEX})
    assert load_migrations(directory)[1].in_transaction is False

    assert await migrate(url, directory) == ["0001_items", "0002_items_body"]
    assert await index_state(url, "items_body") == [("items_body", True)]
    assert await migrate(url, directory) == []
    versions = await fetch(url, "SELECT version FROM schema_migrations ORDER BY version")
    assert [r["version"] for r in versions] == ["0001_items", "0002_items_body"]


async def test_writes_go_on_while_a_concurrent_index_is_built(tmp_path: Path, new_database: Callable[[], str]) -> None:
    """An open transaction with a snapshot makes the build wait; meanwhile other sessions write."""
    url = new_database()
    await migrate(url, folder(tmp_path, **{"0001_items": TABLE}))
    directory = folder(tmp_path, **{"0002_items_body": CONCURRENT_INDEX})
    holder, writer = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        reader = holder.transaction(isolation="repeatable_read")
        await reader.start()
        await holder.fetchval("SELECT count(*) FROM items")  # takes the snapshot the build waits for
        build = asyncio.create_task(migrate(url, directory))
        await _wait_for(
            url, "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index WHERE datname = current_database())"
        )
        # The build is under way and waiting: writes are not blocked by it.
        await asyncio.wait_for(writer.execute("INSERT INTO items VALUES (100001, 'written during the build')"), 5)
        await asyncio.wait_for(writer.execute("UPDATE items SET body = 'changed' WHERE id = 1"), 5)
        assert not build.done()
        await reader.rollback()
        assert await asyncio.wait_for(build, 30) == ["0002_items_body"]
    finally:
        await holder.close()
        await writer.close()
    assert await index_state(url, "items_body") == [("items_body", True)]


async def _wait_for(url: str, query: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not (await fetch(url, query))[0][0]:
            await asyncio.sleep(0.02)


async def test_two_runners_at_once_apply_each_migration_once(tmp_path: Path, new_database: Callable[[], str]) -> None:
    """The second waits for the lock without holding a snapshot, which the first's concurrent
    build would otherwise wait for (each waiting for the other)."""
    url = new_database()
    await migrate(url, folder(tmp_path, **{"0001_items": TABLE}))
    directory = folder(tmp_path, **{"0002_items_body": CONCURRENT_INDEX})
    results = await asyncio.wait_for(asyncio.gather(*(migrate(url, directory) for _ in range(3))), 60)
    assert sorted(results) == [[], [], ["0002_items_body"]]
    assert await index_state(url, "items_body") == [("items_body", True)]


async def test_a_no_transaction_migration_that_failed_half_way_completes_on_the_next_run(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    await migrate(url, folder(tmp_path, **{"0001_items": TABLE}))
    failing = CONCURRENT_INDEX + "CREATE INDEX CONCURRENTLY items_missing ON items (no_such_column);\n"
    directory = folder(tmp_path, **{"0002_items_body": failing})
    with pytest.raises(MigrationError, match=r"0002_items_body\.sql: .*no_such_column"):
        await migrate(url, directory)
    assert [r["version"] for r in await fetch(url, "SELECT version FROM schema_migrations")] == ["0001_items"]

    # The failed statement is fixed (a file not yet applied may change) and the run starts from the top.
    folder(tmp_path, **{"0002_items_body": CONCURRENT_INDEX.replace("(body)", "(body, id)")})
    assert await migrate(url, directory) == ["0002_items_body"]
    assert await index_state(url, "items_body") == [("items_body", True)]


async def test_a_changed_migration_is_refused_but_a_known_former_text_is_accepted(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    await migrate(url)  # the real migrations
    first = load_migrations(migrations_dir())[0]
    # A database that applied 0001 when it still created pgcrypto: its checksum was that text's.
    (former,) = FORMER_CHECKSUMS[first.version]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = $2 WHERE version = $1", first.version, former)
        assert await migrate(url) == []
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = $1", first.version)
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(url)
    finally:
        await conn.close()


def test_the_former_text_of_0001_is_the_one_that_created_pgcrypto() -> None:
    first = load_migrations(migrations_dir())[0]
    assert "pgcrypto" not in first.sql
    head, _, rest = first.sql.partition("\nCREATE TABLE owners")
    former_text = head + "\nCREATE EXTENSION IF NOT EXISTS pgcrypto;\n\nCREATE TABLE owners" + rest
    assert hashlib.sha256(former_text.encode()).hexdigest() in FORMER_CHECKSUMS[first.version]


async def test_a_missing_extension_stops_the_run_before_anything_is_applied(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    url = new_database()
    directory = folder(
        tmp_path,
        **{
            "0001_items": TABLE,
            "0002_needs_ext": "CREATE EXTENSION IF NOT EXISTS no_such_extension;\n",
            "0003_needs_new_vector": "-- memanto:requires vector >= 99.0\nSELECT 1;\n",
        },
    )
    with pytest.raises(MigrationError) as raised:
        await migrate(url, directory)
    message = str(raised.value)
    assert "'no_such_extension' is not available on this server (needed by 0002_needs_ext.sql)" in message
    assert "0003_needs_new_vector.sql needs 99.0 or later" in message
    assert "pgvector" in message
    assert await fetch(url, "SELECT version FROM schema_migrations") == []
    assert await fetch(url, "SELECT to_regclass('items') IS NULL AS missing") == [(True,)]


async def test_a_database_of_the_previous_release_upgrades_and_its_memories_wait_for_embeddings(
    tmp_path: Path, new_database: Callable[[], str]
) -> None:
    """0006 and 0007 on a database that has memories: every memory is then in the worker's queue."""
    url = new_database()
    released = tmp_path / "released"
    released.mkdir()
    for migration in load_migrations(migrations_dir()):
        if migration.version < "0006":
            (released / migration.path.name).write_text(migration.sql)
    await migrate(url, released)
    conn = await asyncpg.connect(url)
    try:
        owner = await conn.fetchval("INSERT INTO owners (name) VALUES ('old') RETURNING owner_id")
        await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'a')", owner)
        await conn.execute(
            "INSERT INTO memories (owner_id, agent_id, session_id, type, content) "
            "SELECT $1, 'a', 's', 'fact', 'memory ' || i FROM generate_series(1, 50) AS i",
            owner,
        )
        applied = await migrate(url)
        assert [v[:4] for v in applied][:2] == ["0006", "0007"]  # and those of later changes
        assert await conn.fetchval("SELECT count(*) FROM memories WHERE embedding IS NULL") == 50
        assert await index_state(url, "memories_unembedded") == [("memories_unembedded", True)]
        assert await index_state(url, "memories_embedding_hnsw") == [("memories_embedding_hnsw", True)]
    finally:
        await conn.close()
