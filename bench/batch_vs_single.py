"""batch-remember against single remember calls, side by side in one run.

    python -m bench.batch_vs_single [--rounds 5]

Starts one server worker on a database of its own. Each round stores 100 memories with
100 sequential `remember` calls, then 100 memories with one `batch-remember` call, both
over one keep-alive connection; prints memories per second of each and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import asyncpg
import httpx

from bench.common import create_key, drop_database, fresh_database, server

DB_NAME = "memanto_bench_batch"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    url = await fresh_database(DB_NAME)
    try:
        conn = await asyncpg.connect(url)
        try:
            _, key = await create_key(conn)
        finally:
            await conn.close()
        with server(url) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                activated = await client.post(
                    "/api/v2/agents/bench/activate", headers={"Authorization": f"Bearer {key}"}
                )
                headers = {"X-Session-Token": activated.json()["session_token"]}
                items = [
                    {"content": f"memory number {i} about invoices and billing", "type": "fact"} for i in range(100)
                ]
                single_rates, batch_rates = [], []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    for item in items:
                        r = await client.post("/api/v2/agents/bench/remember", json=item, headers=headers)
                        assert r.status_code == 201, r.text
                    single_rates.append(100 / (time.perf_counter() - started))
                    started = time.perf_counter()
                    r = await client.post(
                        "/api/v2/agents/bench/batch-remember", json={"memories": items}, headers=headers
                    )
                    assert r.status_code == 201, r.text
                    batch_rates.append(100 / (time.perf_counter() - started))
        single, batch = statistics.median(single_rates), statistics.median(batch_rates)
        print(f"single remember: {single:,.0f} memories/s (median of {args.rounds} rounds of 100 calls)")
        print(f"batch-remember:  {batch:,.0f} memories/s (median of {args.rounds} calls of 100)")
        print(f"ratio: {batch / single:.1f}x (target >= 20x)")
    finally:
        await drop_database(DB_NAME)


if __name__ == "__main__":
    asyncio.run(main())
