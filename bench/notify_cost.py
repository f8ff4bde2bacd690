"""What the embedding machinery adds to a `remember`: the statement-level NOTIFY trigger of migration 0006.

    python -m bench.notify_cost [--rows 3000]

On a database of its own: `--rows` single-row INSERTs (each its own transaction, as a
`remember` alone is) and the same number in groups of 16 (the group commit), timed with the
trigger on and with it disabled, alternating, twice each. No worker runs (LISTEN is not
needed for NOTIFY to cost what it costs at commit).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg

from bench.common import drop_database, fresh_database

DB_NAME = "memanto_bench_notify"
INSERT_ONE = (
    "INSERT INTO memories (owner_id, agent_id, session_id, type, content) "
    "VALUES ($1::uuid, 'a', 's', 'fact', 'the deploy moved to Friday at five')"
)
INSERT_GROUP = (
    "INSERT INTO memories (owner_id, agent_id, session_id, type, content) "
    "SELECT $1::uuid, 'a', 's', 'fact', 'the deploy moved to Friday at five' FROM generate_series(1, 16)"
)


async def run(rows: int) -> None:
    url = await fresh_database(DB_NAME)
    conn = await asyncpg.connect(url)
    try:
        owner = await conn.fetchval("INSERT INTO owners (name) VALUES ('bench') RETURNING owner_id::text")
        await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1::uuid, 'a')", owner)
        results: dict[tuple[str, bool], list[float]] = {}
        for _ in range(2):
            for trigger in (True, False):
                state = "ENABLE" if trigger else "DISABLE"
                await conn.execute(f"ALTER TABLE memories {state} TRIGGER memories_notify_insert")
                for name, sql, count in (("single", INSERT_ONE, rows), ("group of 16", INSERT_GROUP, rows // 16)):
                    started = time.perf_counter()
                    for _ in range(count):
                        await conn.execute(sql, owner)
                    per = (time.perf_counter() - started) / count * 1e6
                    results.setdefault((name, trigger), []).append(per)
        for name in ("single", "group of 16"):
            on, off = min(results[(name, True)]), min(results[(name, False)])
            print(f"{name:<12} with NOTIFY {on:7.1f} µs/statement, without {off:7.1f} µs ({on - off:+.1f} µs)")
    finally:
        await conn.close()
        await drop_database(DB_NAME)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    asyncio.run(run(parser.parse_args().rows))


if __name__ == "__main__":
    main()
