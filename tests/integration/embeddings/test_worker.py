"""The embedding worker: the queue shared by several workers, PATCH re-embedding, the backlog,
readiness while it drains, and recall by meaning soon after a memory's 201."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
from typing import Any
from uuid import uuid4

import asyncpg
import httpx
import msgspec
import numpy as np
import pytest
from litestar.testing import AsyncTestClient

from memanto_server.embeddings.repository import EmbeddingRepository
from memanto_server.embeddings.service import check_model
from memanto_server.embeddings.worker import EmbeddingWorker
from memanto_server.lib.db import Database
from memanto_server.lifespan import open_pool
from memanto_server.main import create_app
from memanto_server.memories.repository import MemoryRepository
from memanto_server.memories.schemas import RememberRequest
from memanto_server.settings import Settings
from tests.helpers.embedders import CountingEmbedder, local_model, stored_vector, wait_embedded
from tests.helpers.embeddings import ensure_agent, insert_memory
from tests.helpers.owners import Live, create_owner_key, start
from tests.helpers.processes import running_server, settings_env


async def test_concurrent_workers_embed_each_memory_exactly_once_while_memories_arrive(
    fresh_db: asyncpg.Connection[Any], fresh_database_url: str, settings: Settings
) -> None:
    embedder = CountingEmbedder()
    await check_model(fresh_db, embedder)  # records the model, as the app does at start-up
    owner_id = await fresh_db.fetchval("INSERT INTO owners (name) VALUES ('w') RETURNING owner_id::text")
    await ensure_agent(fresh_db, owner_id, "a")
    workers = [EmbeddingWorker(fresh_database_url, embedder, batch_size=8, poll_seconds=0.5) for _ in range(3)]
    for worker in workers:
        worker.start()
    pool = await open_pool(msgspec.structs.replace(settings, database_url=fresh_database_url))
    try:
        memories = MemoryRepository(Database(pool, 5))

        async def remember(writer: int) -> None:
            for i in range(40):
                text = f"writer {writer} memory {i}: the meeting moved to room {writer * 100 + i}"
                await memories.insert(owner_id, "a", "s", RememberRequest(type="fact", content=text), None)
                if i % 10 == 0:
                    await asyncio.sleep(0.01)

        await asyncio.gather(*(remember(w) for w in range(5)))
        await wait_embedded(fresh_database_url, count=200)
    finally:
        for worker in workers:
            await worker.stop()
        await pool.close()

    contents = {r["content"] for r in await fresh_db.fetch("SELECT content FROM memories")}
    assert len(contents) == 200
    assert set(embedder.documents) == contents
    assert set(embedder.documents.values()) == {1}, embedder.documents.most_common(3)
    assert await fresh_db.fetchval("SELECT count(*) FROM memories WHERE embedding IS NULL") == 0
    # What was stored is each memory's own embedding (int8 activations are scaled per batch,
    # so a text embedded among others comes out a little different from one embedded alone).
    row = await fresh_db.fetchrow("SELECT memory_id, content FROM memories LIMIT 1")
    expected = (await local_model().embed_documents([row["content"]]))[0]
    assert float(np.dot(await stored_vector(fresh_db, row["memory_id"]), expected)) > 0.98


async def _live(client: Any, conn: asyncpg.Connection[Any]) -> Live:
    return await start(client, await create_owner_key(conn))


async def test_patched_content_is_embedded_again_and_other_changes_keep_the_embedding(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings
) -> None:
    model = local_model()
    async with AsyncTestClient(app=create_app(semantic_settings)) as client:
        live = await _live(client, fresh_db)
        created = await client.post(
            live.remember_url,
            json={"type": "preference", "content": "Prefers tea in the morning"},
            headers=live.headers,
        )
        assert created.status_code == 201, created.text
        memory_id = created.json()["memory_id"]
        await wait_embedded(semantic_settings.database_url, count=1)
        before = await stored_vector(fresh_db, memory_id)
        assert before is not None

        url = live.url(f"memories/{memory_id}")
        tagged = await client.patch(url, json={"tags": ["drinks"]}, headers=live.headers)
        assert tagged.status_code == 200, tagged.text
        assert np.array_equal(await stored_vector(fresh_db, memory_id), before)  # the text did not change

        changed = await client.patch(url, json={"content": "Drinks black coffee at breakfast"}, headers=live.headers)
        assert changed.status_code == 200, changed.text
        await wait_embedded(semantic_settings.database_url, count=1)
        after = await stored_vector(fresh_db, memory_id)
        expected = (await model.embed_documents(["Drinks black coffee at breakfast"]))[0]
        assert after is not None
        assert float(np.dot(after, expected)) > 0.999
        assert float(np.dot(before, expected)) < 0.9


async def test_the_backlog_is_a_metric_and_the_app_stays_ready_while_it_drains(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings
) -> None:
    # The app's own worker is off: memories wait until a worker of the test's runs.
    app_settings = msgspec.structs.replace(semantic_settings, embedding_worker=False)
    async with AsyncTestClient(app=create_app(app_settings)) as client:
        live = await _live(client, fresh_db)
        items = [{"type": "fact", "content": f"backlog memory number {i}"} for i in range(30)]
        stored = await client.post(live.url("batch-remember"), json={"memories": items}, headers=live.headers)
        assert stored.status_code == 201, stored.text
        assert await _backlog_metric(client, lambda v: v == 30) == 30

        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ok"
        assert ready.json()["embedding_backlog"] == 30

        # A worker drains it (in small batches); readiness does not change meanwhile.
        worker = EmbeddingWorker(app_settings.database_url, CountingEmbedder(), batch_size=4)
        worker.start()
        try:
            while await fresh_db.fetchval("SELECT count(*) FROM memories WHERE embedding IS NULL"):
                assert (await client.get("/health/ready")).status_code == 200
                await asyncio.sleep(0.02)
        finally:
            await worker.stop()
        assert await _backlog_metric(client, lambda v: v == 0) == 0
        async with asyncio.timeout(10):  # refreshed every embedding_backlog_seconds
            while (await client.get("/health/ready")).json()["embedding_backlog"] != 0:
                await asyncio.sleep(0.05)


async def _backlog_metric(client: Any, wanted: Any, timeout: float = 10) -> float:
    async with asyncio.timeout(timeout):
        while True:
            text = (await client.get("/metrics")).text
            found = re.search(r"^memanto_embedding_backlog(?:\{[^}]*\})? ([\d.e+]+)$", text, re.MULTILINE)
            if found and wanted(float(found.group(1))):
                return float(found.group(1))
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_memory_is_found_by_text_at_once_and_by_meaning_soon_after(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings
) -> None:
    """A real server with its worker: the 201 is not held for the embedding; full text finds
    the memory from the 201, KNN as soon as the worker (woken by NOTIFY) has embedded it."""
    model = local_model()
    with running_server(settings_env(semantic_settings)) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            live = await _live(client, fresh_db)
            content = f"The customer prefers email over phone calls ({uuid4().hex[:6]})"
            created = await client.post(
                live.remember_url, json={"type": "preference", "content": content}, headers=live.headers
            )
            assert created.status_code == 201, created.text
            recalled = await client.post(live.recall_url, json={"query": "email phone"}, headers=live.headers)
            assert recalled.status_code == 200, recalled.text
            assert created.json()["memory_id"] in {m["memory_id"] for m in recalled.json()["memories"]}

            query = await model.embed_query("How does the client want to be contacted?")
            pool = await open_pool(semantic_settings)
            try:
                knn = EmbeddingRepository(Database(pool, 5))
                async with asyncio.timeout(10):
                    while not (
                        found := await knn.nearest(live.owner.owner_id, live.agent_id, query, model_id=model.model_id)
                    ):
                        await asyncio.sleep(0.02)
            finally:
                await pool.close()
            assert found[0].memory_id == created.json()["memory_id"]
            assert found[0].score > 0.3


@pytest.mark.slow
async def test_the_worker_runs_as_a_process_of_its_own_and_stops_on_sigterm(
    fresh_db: asyncpg.Connection[Any], semantic_settings: Settings
) -> None:
    """`memanto-server worker`, as its own container would run it, with the app's worker off."""
    env = settings_env(msgspec.structs.replace(semantic_settings, embedding_worker=False))
    owner = await create_owner_key(fresh_db)
    worker = subprocess.Popen(
        [sys.executable, "-m", "memanto_server.cli.server", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for i in range(12):
            await insert_memory(fresh_db, owner.owner_id, "a", f"stored while the worker runs, number {i}")
        await wait_embedded(semantic_settings.database_url, count=12)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        stderr = worker.stderr.read() if worker.stderr else ""
        if worker.stderr:
            worker.stderr.close()
    assert "embedding worker running (all-MiniLM-L6-v2-int8)" in stderr
    assert "Traceback" not in stderr
