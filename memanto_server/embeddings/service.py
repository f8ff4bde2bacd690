"""The rules of the embedding model: which model may run against a database, and re-embedding.

Vectors of two models cannot be compared, so the database records the model of its
embeddings (table `embedding_model`). A process whose embedder is another model refuses to
start until `memanto-server reembed` has embedded every memory with the new one; the first
process to start against a database records its model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from memanto_server.embeddings import repository
from memanto_server.embeddings.base import Embedder
from memanto_server.embeddings.worker import EmbeddingWorker

logger = logging.getLogger("memanto.embeddings")


class ModelRefused(Exception):
    """The configured embedding model may not run against this database (yet); the message says why and what to do."""


def _describe(model_id: str, dimension: int) -> str:
    return f"{model_id!r} ({dimension} dimensions)"


async def check_model(conn: asyncpg.Connection[Any], embedder: Embedder) -> None:
    """Refuse (ModelRefused) unless the embeddings in this database are the embedder's model's."""
    configured = _describe(embedder.model_id, embedder.dimension)
    recorded = await repository.recorded_model(conn)
    if recorded is None:
        column = await repository.column_dimension(conn)
        if column != embedder.dimension:
            raise ModelRefused(
                f"the embedding column holds {column}-dimension vectors and the configured model {configured} makes "
                f"{embedder.dimension}: run `memanto-server reembed` (same settings) to prepare the database, "
                "then start again"
            )
        await repository.record_first_model(conn, embedder.model_id, embedder.dimension)
        recorded = await repository.recorded_model(conn)
        assert recorded is not None
    if (recorded.model_id, recorded.dimension) != (embedder.model_id, embedder.dimension):
        raise ModelRefused(
            f"the memories are embedded with {_describe(recorded.model_id, recorded.dimension)}, and the configured "
            f"embedder is {configured}: run `memanto-server reembed` with the new settings to embed every memory "
            "again (resumable), then start; or configure the recorded model again"
        )
    if not recorded.complete:
        progress = await repository.progress(conn)
        raise ModelRefused(
            f"re-embedding with {configured} is not finished ({progress.embedded} of {progress.total} memories): "
            "run `memanto-server reembed` again to finish it"
        )


async def reembed(
    conn: asyncpg.Connection[Any],
    worker: EmbeddingWorker,
    embedder: Embedder,
    *,
    force: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Embed every memory with `embedder` and record it as the model; how many were embedded.

    A new model (or `force`) first drops every embedding and sizes the column for it; an
    interrupted run, started again with the same model, goes on from where it stopped.
    `on_start(total, embedded)` is called once the work is known, `on_batch(n)` after each batch.
    """
    recorded = await repository.recorded_model(conn)
    same = recorded is not None and (recorded.model_id, recorded.dimension) == (embedder.model_id, embedder.dimension)
    if force or not same:
        if recorded is None and await repository.column_dimension(conn) == embedder.dimension and not force:
            await repository.record_model(conn, embedder.model_id, embedder.dimension, complete=False)
        else:
            logger.info(
                "dropping every embedding: the model becomes %s", _describe(embedder.model_id, embedder.dimension)
            )
            await repository.reset_embeddings(conn, embedder.model_id, embedder.dimension)
    await repository.ensure_indexes(conn)
    progress = await repository.progress(conn)
    if on_start is not None:
        on_start(progress.total, progress.embedded)
    done = await worker.drain(conn, on_batch)
    await repository.mark_complete(conn, embedder.model_id, embedder.dimension)
    return done
