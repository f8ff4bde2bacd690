"""An OpenAI-compatible `POST …/embeddings` endpoint: OpenAI, Ollama, vLLM, text-embeddings-inference.

Texts go in batches of `batch_size` per request. Each request has a timeout; a timeout, a
connection error, a 429 or a 5xx is retried up to `retries` times with exponential backoff
(honouring a short `Retry-After`), then reported as `EmbedderUnavailable` (the worker tries
again later; recall answers by full text meanwhile). A query, on a request's path, is retried
once at most: a caller waiting on recall is better served by full text than by a long wait.
Any other error status is the request's fault and is not retried (`EmbedderError`). The API
key is sent, never logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx
import msgspec
import numpy as np

from memanto_server.embeddings.base import Embedder, EmbedderError, EmbedderUnavailable, normalised

logger = logging.getLogger("memanto.embeddings")

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Response(msgspec.Struct):
    data: list[_Item]


def embeddings_url(base: str) -> str:
    """`…/v1` or `…/v1/embeddings` → the endpoint."""
    base = base.rstrip("/")
    return base if base.endswith("/embeddings") else base + "/embeddings"


class OpenAIEmbedder(Embedder):
    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str = "",
        dimension: int = 0,
        timeout: float = 10.0,
        retries: int = 3,
        batch_size: int = 32,
        query_prefix: str = "",
        document_prefix: str = "",
    ) -> None:
        self.model_id = model
        self.dimension = dimension
        self._url = embeddings_url(url)
        self._model = model
        self._retries = retries
        self._batch_size = batch_size
        self._prefixes = (document_prefix, query_prefix)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), headers=headers)

    async def start(self) -> None:
        """Learn the dimension with one call, unless it was configured (then the endpoint need
        not be up for the app to start: the worker retries, recall falls back to full text)."""
        if self.dimension:
            return
        try:
            found = (await self._request(["dimension"])).shape[1]
        except EmbedderUnavailable as exc:
            raise EmbedderUnavailable(
                f"{exc}; set MEMANTO_EMBEDDING_DIMENSION to start while the endpoint is unreachable"
            ) from None
        self.dimension = found

    async def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, self._prefixes[0], self._retries)

    async def _embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return await self._embed(texts, self._prefixes[1], min(self._retries, 1))

    async def _embed(self, texts: Sequence[str], prefix: str, retries: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            await self._request([prefix + t for t in texts[start : start + self._batch_size]], retries)
            for start in range(0, len(texts), self._batch_size)
        ]
        return np.concatenate(parts)

    async def _request(self, texts: list[str], retries: int | None = None) -> np.ndarray:
        body = {"model": self._model, "input": texts, "encoding_format": "float"}
        retries = self._retries if retries is None else retries
        delay = FIRST_BACKOFF
        for attempt in range(retries + 1):
            last = attempt == retries
            try:
                response = await self._client.post(self._url, json=body)
            except httpx.HTTPError as exc:  # timeouts and connection errors
                if last:
                    raise EmbedderUnavailable(f"embedding endpoint: {type(exc).__name__}") from None
                logger.warning("embedding endpoint: %s; retrying", type(exc).__name__)
            else:
                if response.status_code == 200:
                    return self._vectors(response.content, len(texts))
                if response.status_code not in RETRY_STATUSES:
                    raise EmbedderError(f"embedding endpoint answered {response.status_code}: {response.text[:200]}")
                if last:
                    raise EmbedderUnavailable(f"embedding endpoint answered {response.status_code}")
                logger.warning("embedding endpoint answered %s; retrying", response.status_code)
                delay = max(delay, _retry_after(response))
            await asyncio.sleep(min(delay, MAX_BACKOFF))
            delay *= 2
        raise AssertionError("unreachable")

    def _vectors(self, content: bytes, count: int) -> np.ndarray:
        try:
            items = msgspec.json.decode(content, type=_Response).data
        except msgspec.DecodeError as exc:
            raise EmbedderError(f"embedding endpoint: unexpected answer ({exc})") from None
        sizes = {len(i.embedding) for i in items}
        if len(items) != count or len(sizes) != 1 or (self.dimension and sizes != {self.dimension}):
            raise EmbedderError(
                f"embedding endpoint: {len(items)} vectors of {sorted(sizes)} numbers for {count} texts"
                + (f" (expected {self.dimension} numbers)" if self.dimension else "")
            )
        items.sort(key=lambda item: item.index)
        return normalised(np.array([item.embedding for item in items], dtype=np.float32))

    async def close(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("retry-after", 0))
    except ValueError:
        return 0.0
