"""Prometheus metrics: their definitions, and `GET /metrics` to scrape them.

Services count events with one call where they happen (`SESSIONS_ACTIVATED.inc()`);
requests are counted by the access-log middleware, labelled by route template (never
the raw path, so an agent id cannot blow up the number of series).

With several uvicorn workers each process writes its samples to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode, chosen when the
variable is set before the first import), and a scrape of any worker adds up all of
them. `memanto-server serve --workers N` sets up that directory by itself.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "memanto_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "memanto_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SESSIONS_ACTIVATED = Counter("memanto_sessions_activated", "Sessions activated")
SESSIONS_ENDED = Counter(
    "memanto_sessions_ended", "Sessions ended, by reason (deactivated, superseded, expired)", ["reason"]
)
MEMORIES_STORED = Counter("memanto_memories_stored", "Memories stored (idempotent replays not counted)")
RECALL_RESULTS = Counter("memanto_recall_results", "Memories returned by recall and answer")
DEPENDENCY_ERRORS = Counter(
    "memanto_dependency_errors",
    "Failures of a backend seen by the app, by backend (postgres, redis, ratelimit, other)",
    ["backend"],
)

# Recall by meaning: memories waiting for the embedding worker (every process reads the same
# number from Postgres; in multiprocess mode the live processes' largest is shown), and the work.
EMBEDDING_BACKLOG = Gauge(
    "memanto_embedding_backlog", "Memories stored but not embedded yet", multiprocess_mode="livemax"
)
EMBEDDINGS_STORED = Counter("memanto_embeddings_stored", "Memories embedded by the embedding worker")
EMBEDDING_BATCH_DURATION = Histogram(
    "memanto_embedding_batch_duration_seconds",
    "Time to claim, embed and store one batch of memories",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
EMBEDDING_ERRORS = Counter(
    "memanto_embedding_errors", "Batches the worker could not embed, by kind (unavailable, failed)", ["kind"]
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    requests, duration = _request_series(method, route, status)
    requests.inc()
    duration.observe(seconds)


@functools.lru_cache(maxsize=1024)
def _request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    """The two labelled series of a request kind: `labels()` takes a lock and builds a key on
    every call, and every request would pay for it. Few kinds exist (route templates, not paths)."""
    labels = (method, route, str(status))
    return HTTP_REQUESTS.labels(*labels), HTTP_REQUEST_DURATION.labels(*labels)


def exposition(accept: str = "") -> tuple[bytes, str]:
    """Every metric, in the format the scraper asks for; summed over all workers in multiprocess mode."""
    encode, content_type = choose_encoder(accept)
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return encode(REGISTRY), content_type
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)
    return encode(registry), content_type


@get("/metrics", include_in_schema=False, sync_to_thread=False)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus scrape target (no credentials: keep it off the public network)."""
    body, content_type = exposition(request.headers.get("accept", ""))
    return Response(body, headers={"Content-Type": content_type})


def prepare_multiprocess_dir(workers: int) -> Path | None:
    """Set up `PROMETHEUS_MULTIPROC_DIR` for a server about to start its workers.

    A directory given by the operator is emptied (samples of an earlier run would be
    added to this one's), so each server process needs a directory of its own. Without
    one, several workers get a fresh temporary directory, which the caller removes when
    the server stops; it is returned for that.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    if workers <= 1:
        return None
    created = Path(tempfile.mkdtemp(prefix="memanto-metrics-"))
    os.environ[MULTIPROC_ENV] = str(created)
    return created


def remove_multiprocess_dir(directory: Path | None) -> None:
    if directory is not None:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
