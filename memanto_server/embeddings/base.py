"""The embedder interface: what the worker and recall need of a model, whichever runs it."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where vectors are handled: a server without an embedder never loads it
    import numpy as np


class EmbedderError(Exception):
    """The model could not embed (a bad model folder, an endpoint that refuses or is unreachable)."""


class EmbedderUnavailable(EmbedderError):
    """A remote endpoint did not answer in time or answered 5xx/429 after the retries: try later."""


class Embedder(abc.ABC):
    """Turns text into unit-length vectors of `dimension` numbers; `model_id` names the model.

    Documents and queries are embedded apart: some models (e5) mark them differently. Both
    calls are async and do their work off the event loop (a thread, or a remote endpoint).
    """

    model_id: str
    dimension: int

    @abc.abstractmethod
    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, float32, L2-normalised."""

    async def embed_query(self, text: str) -> np.ndarray:
        """The vector of one search query."""
        return (await self._embed_queries([text]))[0]

    async def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """The vectors of several search queries, in one call: one row per text."""
        return await self._embed_queries(texts)

    @abc.abstractmethod
    async def _embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    async def close(self) -> None:  # noqa: B027 - most embedders hold nothing to close
        """Release what the embedder holds (connections, threads)."""


def memory_text(title: str | None, content: str, max_chars: int) -> str:
    """What a memory's embedding is made of: its title and content, cut at `max_chars`."""
    text = f"{title}\n{content}" if title else content
    return text[:max_chars]


def normalised(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
