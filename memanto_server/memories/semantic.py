"""Recall by meaning for the memory service: the embedder and nearest-neighbour search.

The query's embedding is kept for a while (a small LRU cache: a function of the text and
the model alone, so nothing ever makes it stale): answer embeds its question for recall
and again to compare it with sentences, and agents repeat their questions.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

from memanto_server.embeddings.base import Embedder, EmbedderError
from memanto_server.embeddings.repository import EmbeddingRepository
from memanto_server.memories.repository import MemoryRepository, MemoryRow
from memanto_server.memories.schemas import MemoryFilters

if TYPE_CHECKING:  # numpy is imported where vectors are handled: a server without an embedder never loads it
    import numpy as np

QUERY_CACHE_SIZE = 1024


class SemanticUnavailable(Exception):
    """The embedder could not embed the query (a remote endpoint down, say)."""


class EmbeddingSemantic:
    def __init__(self, embedder: Embedder, embeddings: EmbeddingRepository, memories: MemoryRepository) -> None:
        self._embedder = embedder
        self._embeddings = embeddings
        self._memories = memories
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()

    async def _query_vector(self, text: str) -> np.ndarray:
        vector = self._queries.get(text)
        if vector is None:
            try:
                vector = await self._embedder.embed_query(text)
            except EmbedderError as exc:
                raise SemanticUnavailable(str(exc)) from exc
            self._queries[text] = vector
            if len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        else:
            self._queries.move_to_end(text)
        return vector

    async def _query_vectors(self, texts: list[str]) -> list[np.ndarray]:
        """The vectors of several queries: those not cached embedded together, in one call."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._queries]
        if missing:
            try:
                vectors = await self._embedder.embed_queries(missing)
            except EmbedderError as exc:
                raise SemanticUnavailable(str(exc)) from exc
            for text, vector in zip(missing, vectors, strict=True):
                self._queries[text] = vector
                if len(self._queries) > QUERY_CACHE_SIZE:
                    self._queries.popitem(last=False)
        found = [self._queries.get(t) for t in texts]
        # A cache smaller than one call's queries drops some of them: embed those one by one.
        return [v if v is not None else await self._query_vector(t) for v, t in zip(found, texts, strict=True)]

    async def nearest(
        self, owner_id: str, agent_id: str, query: str, filters: MemoryFilters, limit: int, *, known_large: bool
    ) -> list[tuple[MemoryRow, float]]:
        vector = await self._query_vector(query)
        rows = await self._embeddings.nearest(
            owner_id,
            agent_id,
            vector,
            model_id=self._embedder.model_id,
            filters=filters,
            limit=limit,
            known_large=known_large,
        )
        return [(row, row.score) for row in rows]

    async def similarities(self, query: str, texts: list[str]) -> list[float]:
        vector = await self._query_vector(query)
        try:
            documents = await self._embedder.embed_documents(texts)
        except EmbedderError as exc:
            raise SemanticUnavailable(str(exc)) from exc
        import numpy as np

        return [float(x) for x in np.asarray(documents) @ vector]

    async def pair_similarities(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Cosine similarity of each (query, text) pair: the query embedded as a query."""
        if not pairs:
            return []
        queries = await self._query_vectors([query for query, _ in pairs])
        try:
            documents = await self._embedder.embed_documents([text for _, text in pairs])
        except EmbedderError as exc:
            raise SemanticUnavailable(str(exc)) from exc
        import numpy as np

        return [float(np.dot(document, query)) for document, query in zip(documents, queries, strict=True)]

    async def alike(self, owner_id: str, agent_id: str, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], float]:
        return await self._memories.pair_similarity(owner_id, agent_id, pairs)
