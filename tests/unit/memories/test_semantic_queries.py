"""The queries answer compares with its sentences: embedded together, each once."""

from __future__ import annotations

from typing import Any

import numpy as np

from memanto_server.memories.semantic import EmbeddingSemantic
from tests.helpers.embedders import CountingEmbedder

PAIRS = [
    ("What is the root password?", "The production database runs PostgreSQL 13."),
    ("production database", "The production database runs PostgreSQL 13."),
    ("What is the root password?", "Logs are kept 14 days."),
]


async def test_the_queries_of_many_pairs_are_embedded_in_one_call_and_kept() -> None:
    embedder = CountingEmbedder()
    unused: Any = None  # nearest-neighbour search and stored embeddings are not asked for here
    semantic = EmbeddingSemantic(embedder, unused, unused)
    found = await semantic.pair_similarities(PAIRS)
    assert embedder.query_calls == 1
    assert embedder.queries == {"What is the root password?": 1, "production database": 1}
    one_by_one = [
        float(np.dot(await embedder.embed_query(query), (await embedder.embed_documents([text]))[0]))
        for query, text in PAIRS
    ]
    assert np.allclose(found, one_by_one, atol=0.05)  # int8 activations: a batch shifts them a little
    calls = embedder.query_calls
    await semantic.pair_similarities(PAIRS)
    assert embedder.query_calls == calls  # every query is known now
