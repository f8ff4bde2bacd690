"""A change of embedding model: refused at start-up until `memanto-server reembed` has embedded every
memory with the new model; reembed resumes where an interrupted run stopped."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.embeddings.local import load_local
from memanto_server.embeddings.service import ModelRefused
from memanto_server.embeddings.worker import EmbeddingWorker
from memanto_server.main import create_app
from memanto_server.settings import Settings
from tests.helpers.embedders import model_folder, stored_vector
from tests.helpers.embeddings import insert_memory
from tests.helpers.processes import settings_env

pytestmark = pytest.mark.slow

NEW_MODEL = "other-model"


@pytest.fixture
def new_settings(semantic_settings: Settings, tmp_path: Path) -> Settings:
    """Another model: the bundled files under another id, marking documents differently."""
    folder = model_folder(tmp_path / "model", NEW_MODEL, document_prefix="passage: ")
    return msgspec.structs.replace(semantic_settings, embedding_model_dir=str(folder))


def cli(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memanto_server.cli.server", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


async def memories_embedded_with_the_first_model(conn: asyncpg.Connection[Any], settings: Settings, count: int) -> None:
    async with AsyncTestClient(app=create_app(settings)):  # the first start records the model
        pass
    owner = await conn.fetchval("INSERT INTO owners (name) VALUES ('r') RETURNING owner_id::text")
    for i in range(count):
        await insert_memory(conn, owner, "a", f"memory {i}: the quarterly report is due on the {i % 28 + 1}th")
    worker = EmbeddingWorker(settings.database_url, load_local(), batch_size=64)
    drain = await worker.connect()
    try:
        await worker.drain(drain)
    finally:
        await drain.close()


async def refusal_at_start(settings: Settings) -> str | None:
    """Why the app refused to start with `settings` (None if it started)."""
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            assert (await client.get("/health/ready")).status_code == 200
            return None
    except BaseException as exc:  # the test client reports a failed start-up in an exception group
        refused = _find(exc)
        if refused is None:
            raise
        return str(refused)


def _find(exc: BaseException) -> ModelRefused | None:
    if isinstance(exc, ModelRefused):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        if (found := _find(inner)) is not None:
            return found
    return None


async def recorded(conn: asyncpg.Connection[Any]) -> tuple[str, bool]:
    row = await conn.fetchrow("SELECT model_id, complete FROM embedding_model")
    return row["model_id"], row["complete"]


async def test_a_model_change_is_refused_at_start_until_reembed(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings, new_settings: Settings
) -> None:
    await memories_embedded_with_the_first_model(fresh_db, semantic_settings, 20)
    assert await recorded(fresh_db) == ("all-MiniLM-L6-v2-int8", True)

    refusal = await refusal_at_start(new_settings)
    assert refusal is not None
    assert re.search(r"embedded with 'all-MiniLM-L6-v2-int8'.*memanto-server reembed", refusal), refusal
    refused = cli(new_settings, "serve", "--port", "9")
    assert refused.returncode == 4, refused.stderr
    assert "the embedding model cannot be used" in refused.stderr
    assert "Traceback" not in refused.stderr

    done = cli(new_settings, "reembed")
    assert done.returncode == 0, done.stderr
    assert "re-embedded 20 memories" in done.stdout
    assert await recorded(fresh_db) == (NEW_MODEL, True)
    row = await fresh_db.fetchrow("SELECT memory_id, content FROM memories LIMIT 1")
    expected = load_local(new_settings.embedding_model_dir).embed_sync([row["content"]], "passage: ")[0]
    assert float(np.dot(await stored_vector(fresh_db, row["memory_id"]), expected)) > 0.98

    assert await refusal_at_start(new_settings) is None
    assert await refusal_at_start(semantic_settings) is not None  # now the old model is the one refused


async def test_reembed_resumes_after_an_interruption(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings, new_settings: Settings
) -> None:
    total = 120
    await memories_embedded_with_the_first_model(fresh_db, semantic_settings, total)
    slow = msgspec.structs.replace(new_settings, embedding_batch_size=2)
    run = subprocess.Popen(
        [sys.executable, "-m", "memanto_server.cli.server", "reembed"],
        env=settings_env(slow),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(60):
            while not (
                await fresh_db.fetchval("SELECT count(*) FROM embedding_model WHERE model_id = $1", NEW_MODEL)
                and await fresh_db.fetchval("SELECT count(embedding) FROM memories") >= 24
            ):
                assert run.poll() is None, "reembed ended before it was interrupted"
                await asyncio.sleep(0.02)
        run.send_signal(signal.SIGKILL)  # no clean-up at all
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    kept = await fresh_db.fetchval("SELECT count(embedding) FROM memories")
    assert 24 <= kept < total
    assert await recorded(fresh_db) == (NEW_MODEL, False)
    refusal = await refusal_at_start(new_settings)
    assert refusal is not None
    assert f"not finished ({kept} of {total} memories)" in refusal

    again = cli(new_settings, "reembed")
    assert again.returncode == 0, again.stderr
    done = int(re.search(r"re-embedded (\d+) memories", again.stdout).group(1))  # type: ignore[union-attr]
    assert done == total - kept  # went on from where it stopped
    assert await recorded(fresh_db) == (NEW_MODEL, True)
    assert await fresh_db.fetchval("SELECT count(*) FROM memories WHERE embedding IS NULL") == 0
