"""Request metrics counted a batch at a time give what one `observe` per request gives."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest

from memanto_server.ops import metrics


def test_a_batch_adds_what_one_observation_per_request_adds() -> None:
    draws = random.Random(7)
    requests = [
        (draws.choice(["GET", "POST"]), draws.choice(["/a", "/b/{x}"]), draws.choice([200, 201, 499]), seconds)
        for seconds in [draws.expovariate(20) for _ in range(2000)] + [0.005, 0.01, 10.0, 11.0, 0.0]
    ]
    reference = CollectorRegistry()
    counter = Counter("memanto_http_requests", "x", ["method", "route", "status"], registry=reference)
    histogram = Histogram(
        "memanto_http_request_duration_seconds",
        "x",
        ["method", "route", "status"],
        buckets=metrics.DURATION_BUCKETS,
        registry=reference,
    )
    for method, route, status, seconds in requests:
        counter.labels(method, route, str(status)).inc()
        histogram.labels(method, route, str(status)).observe(seconds)

    # The two request metrics alone: the process's registry holds every series the other tests
    # of this worker process made, and reading it whole costs seconds.
    ours = CollectorRegistry()
    ours.register(metrics.HTTP_REQUESTS)
    ours.register(metrics.HTTP_REQUEST_DURATION)
    before = _samples(ours)
    metrics.observe_requests(requests[:700])
    metrics.observe_requests(requests[700:])
    after = _samples(ours)
    expected = _samples(reference)
    assert expected
    for name, value in expected.items():
        added = after.get(name, 0.0) - before.get(name, 0.0)
        assert abs(added - value) < 1e-6, (name, added, value)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    found = {}
    for line in generate_latest(registry).decode().splitlines():
        ours = 'route="/a"' in line or 'route="/b/{x}"' in line
        if line.startswith("memanto_http_request") and ours and "_created" not in line:
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found
