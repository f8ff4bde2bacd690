"""The in-process embedding worker's share of a server process, and what requests feel of it.

    python -m bench.embedding_worker [--backlog 3000] [--requests 400]

One `memanto-server serve` (one uvicorn worker, the local model, the embedding worker in the
process with MEMANTO_EMBEDDING_THREADS=1) on a database of its own. Sequential
`GET /api/v2/session/current` requests (API key + session token) are timed:
  A. with no backlog;
  B. right after `--backlog` memories were stored in one statement, while the worker drains them.
  C. after it drained, as many requests as in B (p99 of B against C: the same sample size);
  D. one `remember` at a time: from its 201 to its embedding stored (the worker woken by the
     insert's NOTIFY), `--wakes` times.
Reported: p50/p99 of each phase, the drain time and rate, and the server process's CPU
(from its own `process_cpu_seconds_total`) per wall second in each phase: the worker's share
is phase B's minus phase C's. Short and bounded: seconds per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import asyncpg
import httpx

from bench.common import create_key, drop_database, fresh_database, percentile, server, unembedded

DB_NAME = "memanto_bench_worker"
API = "/api/v2"


def cpu_seconds(client: httpx.Client) -> float:
    found = re.search(r"^process_cpu_seconds_total ([\d.e+]+)$", client.get("/metrics").text, re.MULTILINE)
    assert found, "no process_cpu_seconds_total in /metrics"
    return float(found.group(1))


def timed_requests(client: httpx.Client, headers: dict[str, str], until: object) -> list[float]:
    times: list[float] = []
    while not until(len(times)):  # type: ignore[operator]
        started = time.perf_counter()
        response = client.get(f"{API}/session/current", headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return times


async def store_backlog(url: str, owner_id: str, agent_id: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            """
            INSERT INTO memories (owner_id, agent_id, session_id, type, content)
            SELECT $1::uuid, $2, 'bench', 'fact',
                   'Memory ' || i || ': the customer asked for the invoice of order ' || (i * 37) ||
                   ' to be sent by email to the accounting team before Friday'
            FROM generate_series(1, $3) AS i
            """,
            owner_id,
            agent_id,
            count,
        )
    finally:
        await conn.close()


def embedded_after(client: httpx.Client, headers: dict[str, str], url: str) -> float:
    """Milliseconds from a remember's 201 to its embedding in Postgres."""
    body = {"type": "fact", "content": "A new fact"}
    response = client.post(f"{API}/agents/bench/remember", json=body, headers=headers)
    answered = time.perf_counter()
    assert response.status_code == 201, response.text
    asyncio.run(wait_embedded(url, response.json()["memory_id"]))
    lag = (time.perf_counter() - answered) * 1000
    time.sleep(0.2)
    return lag


async def wait_embedded(url: str, memory_id: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        query = "SELECT embedding IS NOT NULL FROM memories WHERE memory_id = $1::uuid"
        while not await conn.fetchval(query, memory_id):  # noqa: ASYNC110 - the state is in Postgres
            await asyncio.sleep(0.002)
    finally:
        await conn.close()


def report(name: str, times: list[float], cpu: float, wall: float) -> None:
    p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
    print(
        f"{name:<28} {len(times):5d} requests  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  server CPU {cpu / wall:4.2f} s/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--wakes", type=int, default=20)
    args = parser.parse_args()

    url = asyncio.run(fresh_database(DB_NAME))

    async def setup() -> tuple[str, str]:
        conn = await asyncpg.connect(url)
        try:
            return await create_key(conn)
        finally:
            await conn.close()

    owner_id, key = asyncio.run(setup())
    env = {"MEMANTO_EMBEDDER": "local", "MEMANTO_EMBEDDING_WORKER": "true", "MEMANTO_EMBEDDING_THREADS": "1"}
    try:
        with server(url, extra_env=env) as base, httpx.Client(base_url=base, timeout=10) as client:
            activated = client.post(f"{API}/agents/bench/activate", headers={"Authorization": f"Bearer {key}"})
            headers = {"Authorization": f"Bearer {key}", "X-Session-Token": activated.json()["session_token"]}
            timed_requests(client, headers, lambda n: n >= 50)  # warm-up

            cpu, wall = cpu_seconds(client), time.perf_counter()
            idle = timed_requests(client, headers, lambda n: n >= args.requests)
            report("A. no backlog", idle, cpu_seconds(client) - cpu, time.perf_counter() - wall)

            asyncio.run(store_backlog(url, owner_id, "bench", args.backlog))
            cpu, wall = cpu_seconds(client), time.perf_counter()
            left = [args.backlog]

            def drained(n: int) -> bool:
                if n % 50 == 0:
                    left[0] = asyncio.run(unembedded(url))
                return left[0] == 0

            busy = timed_requests(client, headers, drained)
            seconds, used = time.perf_counter() - wall, cpu_seconds(client) - cpu
            report("B. while the backlog drains", busy, used, seconds)

            cpu, wall = cpu_seconds(client), time.perf_counter()
            after = timed_requests(client, headers, lambda n: n >= len(busy))
            report("C. after, as many as B", after, cpu_seconds(client) - cpu, time.perf_counter() - wall)
            print(
                f"drained {args.backlog} memories in {seconds:.1f} s: {args.backlog / seconds:.0f} memories/s "
                f"of wall time; p99 B/C = {percentile(busy, 0.99) / percentile(after, 0.99):.2f}"
            )
            lags = [embedded_after(client, headers, url) for _ in range(args.wakes)]
            print(
                f"D. 201 to embedding stored ({args.wakes} remembers): p50 {percentile(lags, 0.5):.0f} ms, "
                f"max {max(lags):.0f} ms"
            )
    finally:
        asyncio.run(drop_database(DB_NAME))


if __name__ == "__main__":
    main()
