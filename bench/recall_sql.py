"""Postgres CPU of recall's text search per call, on the agent bench.run's recall rows search.

    python -m bench.recall_sql [--calls 200] [--rounds 8]

Makes a database of its own (on the benchmarks' Postgres, bench.common), stores bench.run's
recall agent straight into `memories` (300 memories, the same texts), and runs SEARCH_TEXT
(memanto_server/memories/repository.py) as recall does for a few queries, `--calls` times a
round on one connection. Prints, per query, the median over the rounds of that connection's
backend CPU time per call (user + system, from /proc/<pid>/stat: the server's own work, which
other processes on the machine hardly change, unlike wall time) and the rows found. The
server must run on this machine (the embedded one does).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import uuid
from pathlib import Path

import asyncpg

from bench.common import drop_database, fresh_database
from memanto_server.memories.repository import POPULATION_UP_TO, SEARCH_TEXT
from memanto_server.memories.search.grammar import parse

TOPICS = ["billing email", "phone call", "invoice refund", "support hours", "contract renewal"]
MEMORIES = 300
# A word 60 memories hold, twice; a word every memory holds; a word none holds.
QUERIES = ["billing email", "note", "zebra"]
PER_TERM = 100  # memories/service.py TEXT_CANDIDATES_PER_TERM
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def seed(conn: asyncpg.Connection) -> uuid.UUID:
    owner = uuid.uuid4()
    await conn.execute("INSERT INTO owners (owner_id, name) VALUES ($1, 'bench')", owner)
    await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, 'bench-recall')", owner)
    await conn.executemany(
        "INSERT INTO memories (owner_id, agent_id, session_id, type, content, tags) "
        "VALUES ($1, 'bench-recall', 'bench', 'fact', $2, $3)",
        [
            (owner, f"Note {i}: the customer asked about {TOPICS[i % 5]} on day {i % 30}", [TOPICS[i % 5].split()[0]])
            for i in range(MEMORIES)
        ],
    )
    await conn.execute("ANALYZE memories")
    return owner


async def measure(calls: int, rounds: int) -> None:
    name = f"memanto_bench_recall_sql_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(await fresh_database(name))
    try:
        owner = await seed(conn)
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        for text in QUERIES:
            terms = parse(text).terms
            args = (owner, "bench-recall", [t.text for t in terms], [t.kind for t in terms], "")
            args += (None, None, None, None, PER_TERM, False, POPULATION_UP_TO, False)
            rows = len(await conn.fetch(SEARCH_TEXT, *args))
            for _ in range(20):  # statements prepared, plans cached
                await conn.fetch(SEARCH_TEXT, *args)
            samples = []
            for _ in range(rounds):
                before = cpu_seconds(pid)
                for _ in range(calls):
                    await conn.fetch(SEARCH_TEXT, *args)
                samples.append((cpu_seconds(pid) - before) / calls * 1e6)
            print(
                f"{text!r}: {statistics.median(samples):,.0f} µs backend CPU per call (median of {rounds} rounds "
                f"of {calls}; rounds {min(samples):,.0f} to {max(samples):,.0f}), {rows} rows",
                flush=True,
            )
    finally:
        await conn.close()
        await drop_database(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200, help="calls per round (default 200)")
    parser.add_argument("--rounds", type=int, default=8, help="rounds; the median is printed (default 8)")
    args = parser.parse_args(argv)
    asyncio.run(measure(args.calls, args.rounds))


if __name__ == "__main__":
    main()
