"""The embedder the settings ask for, ready to use (its model loaded, its dimension known).

Each implementation is imported when it is asked for: a process with the local model does not
load an HTTP client it never uses, nor one with an endpoint ONNX Runtime.
"""

from __future__ import annotations

import asyncio

from memanto_server.embeddings.base import Embedder
from memanto_server.settings import Settings


async def open_embedder(settings: Settings) -> Embedder | None:
    """None when recall by meaning is off (`MEMANTO_EMBEDDER=none`). Raises EmbedderError when
    the model cannot be loaded or the endpoint refuses."""
    if settings.embedder == "none":
        return None
    if settings.embedder == "local":
        from memanto_server.embeddings.local import load_local

        return await asyncio.to_thread(load_local, settings.embedding_model_dir, settings.embedding_threads)
    from memanto_server.embeddings.remote import OpenAIEmbedder

    embedder = OpenAIEmbedder(
        settings.embedding_url,
        settings.embedding_model,
        api_key=settings.embedding_api_key,
        dimension=settings.embedding_dimension,
        timeout=settings.embedding_timeout,
        retries=settings.embedding_retries,
        batch_size=settings.embedding_batch_size,
        query_prefix=settings.embedding_query_prefix,
        document_prefix=settings.embedding_document_prefix,
    )
    try:
        await embedder.start()
    except BaseException:
        await embedder.close()
        raise
    return embedder
