"""Embedders for tests: the real local model, counted; a model folder of another id; waiting for the worker."""

from __future__ import annotations

import asyncio
import collections
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

from memanto_server.embeddings.base import Embedder
from memanto_server.embeddings.local import OnnxEmbedder, bundled_model, load_local


class CountingEmbedder(Embedder):
    """The bundled model, counting every text it is asked to embed."""

    def __init__(self, inner: Embedder | None = None) -> None:
        self._inner = inner or load_local()
        self.model_id = self._inner.model_id
        self.dimension = self._inner.dimension
        self.documents: collections.Counter[str] = collections.Counter()
        self.calls = 0
        self.queries: collections.Counter[str] = collections.Counter()
        self.query_calls = 0

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.documents.update(texts)
        return await self._inner.embed_documents(texts)

    async def _embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.query_calls += 1
        self.queries.update(texts)
        return await self._inner._embed_queries(texts)


def model_folder(folder: Path, model_id: str, **config: Any) -> Path:
    """A model folder holding the bundled model's files under another id (and settings)."""
    files = bundled_model()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").symlink_to(files.model)
    (folder / "tokenizer.json").symlink_to(files.tokenizer)
    (folder / "embedder.json").write_text(json.dumps({"model_id": model_id, **config}))
    return folder


def local_model() -> OnnxEmbedder:
    return load_local()


async def wait_embedded(database_url: str, count: int | None = None, timeout: float = 30) -> None:
    """Until no memory waits for an embedding (and `count` memories exist, if given)."""
    conn = await asyncpg.connect(database_url)
    try:
        async with asyncio.timeout(timeout):
            while True:
                total, waiting = await conn.fetchrow(
                    "SELECT count(*), count(*) FILTER (WHERE embedding IS NULL) FROM memories"
                )
                if waiting == 0 and (count is None or total >= count):
                    return
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def stored_vector(conn: asyncpg.Connection[Any], memory_id: Any) -> np.ndarray | None:
    value = await conn.fetchval("SELECT embedding::real[] FROM memories WHERE memory_id = $1::uuid", str(memory_id))
    return None if value is None else np.array(value, dtype=np.float32)
