"""The OpenAI-compatible embedder against a real HTTP server of the test's own, which serves
`POST /v1/embeddings` with the bundled local model (and misbehaves when told to)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import numpy as np
import pytest

from memanto_server.embeddings.base import EmbedderError, EmbedderUnavailable
from memanto_server.embeddings.remote import OpenAIEmbedder
from memanto_server.embeddings.service import check_model
from memanto_server.embeddings.worker import EmbeddingWorker
from tests.helpers.embedders import local_model, stored_vector, wait_embedded
from tests.helpers.embeddings import insert_memory

KEY = "sk-test-secret"


class EmbeddingServer:
    """`POST /v1/embeddings` on a loopback port: the local model's vectors, in OpenAI's format.

    `script` is a list of what to do with the next requests ("ok", "slow", 503, 429, 400, ...);
    when it is empty, every request is answered. `requests` records each body and its headers.
    """

    def __init__(self) -> None:
        self.script: list[Any] = []
        self.requests: list[dict[str, Any]] = []
        self.delay = 0.5
        model = local_model()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"body": body, "authorization": self.headers.get("Authorization")})
                action = server.script.pop(0) if server.script else "ok"
                if action == "slow":
                    time.sleep(server.delay)
                    action = "ok"
                if action != "ok":
                    self._answer(int(action), {"error": {"message": "scripted failure"}}, {"Retry-After": "0"})
                    return
                if self.path != "/v1/embeddings" or self.headers.get("Authorization") != f"Bearer {KEY}":
                    self._answer(401, {"error": {"message": "bad key or path"}})
                    return
                vectors = model.embed_sync(body["input"])
                data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
                data.reverse()  # the order is given by `index`, not by position
                self._answer(200, {"object": "list", "data": data, "model": body["model"]})

            def _answer(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def sizes(self) -> list[int]:
        return [len(r["body"]["input"]) for r in self.requests]


@pytest.fixture
def endpoint() -> Iterator[EmbeddingServer]:
    server = EmbeddingServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(5)


@contextlib.asynccontextmanager
async def embedder_for(endpoint: EmbeddingServer, **options: Any) -> Any:
    settings = {"api_key": KEY, "timeout": 2.0, "retries": 2, "batch_size": 32, **options}
    embedder = OpenAIEmbedder(endpoint.url, "all-minilm", **settings)
    try:
        yield embedder
    finally:
        await embedder.close()


async def test_vectors_are_the_models_in_batches_with_the_key_and_prefixes(endpoint: EmbeddingServer) -> None:
    texts = [f"memory number {i} about the deploy on Friday" for i in range(70)]
    async with embedder_for(endpoint, query_prefix="query: ", document_prefix="passage: ") as embedder:
        await embedder.start()
        assert embedder.dimension == 384  # learnt from the endpoint
        endpoint.requests.clear()
        vectors = await embedder.embed_documents(texts)
        query = await embedder.embed_query("when do we deploy")

    assert endpoint.sizes() == [32, 32, 6, 1]
    assert all(r["authorization"] == f"Bearer {KEY}" for r in endpoint.requests)
    assert endpoint.requests[0]["body"]["model"] == "all-minilm"
    assert endpoint.requests[0]["body"]["input"][0] == "passage: memory number 0 about the deploy on Friday"
    assert endpoint.requests[-1]["body"]["input"] == ["query: when do we deploy"]
    expected = local_model().embed_sync([f"passage: {t}" for t in texts[:32]])
    assert vectors.shape == (70, 384)
    assert np.allclose(vectors[:32], expected, atol=1e-5)  # in order, whatever the answer's order
    assert query.shape == (384,)
    assert np.isclose(float(np.linalg.norm(query)), 1.0, atol=1e-5)


async def test_a_timeout_and_server_errors_are_retried(endpoint: EmbeddingServer) -> None:
    async with embedder_for(endpoint, dimension=384, timeout=0.3) as embedder:
        endpoint.script = ["slow", 503]
        vectors = await embedder.embed_documents(["one", "two"])
        assert vectors.shape == (2, 384)
        assert len(endpoint.requests) == 3  # slow (timed out), 503, then answered

        endpoint.requests.clear()
        endpoint.script = [429, 502]
        assert (await embedder.embed_documents(["three"])).shape == (1, 384)
        assert len(endpoint.requests) == 3


async def test_an_endpoint_that_keeps_failing_is_unavailable_after_the_retries(endpoint: EmbeddingServer) -> None:
    async with embedder_for(endpoint, dimension=384, retries=2) as embedder:
        endpoint.script = [503, 503, 503, 503]
        with pytest.raises(EmbedderUnavailable, match="503"):
            await embedder.embed_documents(["x"])
        assert len(endpoint.requests) == 3  # the first try and two retries

        # A query is on a request's path: one retry at most, then recall goes on by full text.
        endpoint.requests.clear()
        endpoint.script = [503, 503, 503]
        with pytest.raises(EmbedderUnavailable):
            await embedder.embed_query("x")
        assert len(endpoint.requests) == 2


async def test_a_refused_request_is_not_retried_and_the_key_is_not_in_the_error(endpoint: EmbeddingServer) -> None:
    async with embedder_for(endpoint, dimension=384) as embedder:
        endpoint.script = [400]
        with pytest.raises(EmbedderError) as raised:
            await embedder.embed_documents(["x"])
        assert not isinstance(raised.value, EmbedderUnavailable)
        assert "400" in str(raised.value)
        assert KEY not in str(raised.value)
        assert len(endpoint.requests) == 1


async def test_an_unreachable_endpoint_is_unavailable(endpoint: EmbeddingServer) -> None:
    embedder = OpenAIEmbedder("http://127.0.0.1:9/v1", "m", timeout=0.5, retries=1)
    try:
        with pytest.raises(EmbedderUnavailable, match="set MEMANTO_EMBEDDING_DIMENSION"):
            await embedder.start()
    finally:
        await embedder.close()


async def test_a_wrong_dimension_is_refused(endpoint: EmbeddingServer) -> None:
    async with embedder_for(endpoint, dimension=768) as embedder:
        with pytest.raises(EmbedderError, match="expected 768"):
            await embedder.embed_documents(["x"])


async def test_the_worker_embeds_through_the_endpoint(endpoint: EmbeddingServer, fresh_database_url: str) -> None:
    conn = await asyncpg.connect(fresh_database_url)
    try:
        async with embedder_for(endpoint) as embedder:
            await embedder.start()
            await check_model(conn, embedder)
            owner = await conn.fetchval("INSERT INTO owners (name) VALUES ('o') RETURNING owner_id::text")
            first = await insert_memory(conn, owner, "a", "Invoices are due in 30 days")
            endpoint.script = [503]  # the first batch is retried by the embedder, then goes through
            worker = EmbeddingWorker(fresh_database_url, embedder, batch_size=8, poll_seconds=0.2)
            worker.start()
            try:
                await insert_memory(conn, owner, "a", "The invoice template lives in the shared drive")
                await wait_embedded(fresh_database_url, count=2)
            finally:
                await worker.stop()
        stored = await stored_vector(conn, first)
    finally:
        await conn.close()
    expected = local_model().embed_sync(["Invoices are due in 30 days"])[0]
    assert stored is not None
    assert float(np.dot(stored, expected)) > 0.98
