"""Recall latency: an agent with 1,000 memories against one with 1,000,000, by mode.

    python -m bench.recall_scale [--big 1000000] [--small 1000] [--queries 400] [--modes text,hybrid]
                                 [--vectors model|random] [--keep] [--reuse] [--load-only]

Builds a database of its own (`memanto_bench_recall_<small>_<big>_<vectors>`) on a throwaway
Postgres with pgvector (or the server `MEMANTO_BENCH_POSTGRES_URL` names), loads both agents'
memories with COPY, gives each an embedding (`--vectors`: round the bundled model's vectors of
corpus texts, the default, or random directions; MODEL_EMBEDDINGS, RANDOM_EMBEDDINGS), builds the
indexes, HNSW included, after the load, starts one
server worker (the bundled local model embeds the queries), and sends the same query mix
to both agents, one request at a time, in each mode. Prints the median and p95 of each and
their ratio, then recalls per second on the big agent with 8 concurrent callers (each of the
three phases on a fresh server, so that every query is embedded once in each). The data
set and query mix are deterministic (seeded); the embeddings are not (random()).

A deployment with a million memories gives Postgres memory to hold the HNSW index and the
table (docs/operations.md): the bench's own server gets `--shared-buffers` (4 GB), where
Postgres's default 128 MB would make every walk of the graph read its pages from the OS cache
and measure that instead. A server named by `MEMANTO_BENCH_POSTGRES_URL` keeps its own setting.

The HNSW build dominates the set-up (most of an hour for 1,000,000 memories on two cores):
`--keep` (or `--load-only`, which measures nothing) leaves the database on the server, and
`--reuse` measures again on a database that a previous run left with the same agents
(applying any newer migrations to it first).

The mix (`query_mix`): 45% one content word, 35% two, 10% three, 10% one word with a
letter dropped; words are drawn as often as they occur in the text (Zipf), so frequent
words are asked for often: at 1,000,000 memories half the queries match more than ~850
memories and a tenth more than ~9,000.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from bench.common import SERVER_SETTINGS, create_key, database_url, drop_database, fresh_database, percentile, server
from memanto_server.embeddings.local import load_local
from memanto_server.lib.migrations import migrate
from memanto_server.memories.search.grammar import STOP_WORDS

TYPES = ["fact", "preference", "goal", "decision", "event", "instruction", "observation", "learning"]
# English letter frequencies, so that made-up words have trigrams as varied as real ones.
LETTERS = "etaoinshrdlcumwfgypbvkjxqz"
LETTER_WEIGHTS = [
    12.7,
    9.1,
    8.2,
    7.5,
    7.0,
    6.7,
    6.3,
    6.1,
    6.0,
    4.3,
    4.0,
    2.8,
    2.8,
    2.4,
    2.4,
    2.2,
    2.0,
    2.0,
    1.9,
    1.5,
    1.0,
    0.8,
    0.2,
    0.2,
    0.1,
    0.1,
]

# Indexes dropped for the load and built after it (much faster than maintaining them row by row).
LOAD_INDEXES = {
    "memories_search": "CREATE INDEX memories_search ON memories USING gin (search)",
    "memories_tags": "CREATE INDEX memories_tags ON memories USING gin (tags)",
    "memories_agent_created": (
        "CREATE INDEX memories_agent_created ON memories (owner_id, agent_id, created_at DESC, memory_id DESC)"
    ),
    "memories_ngrams": (
        "CREATE INDEX memories_ngrams ON memories USING gin (text_ngrams(coalesce(title, '') || ' ' || content))"
    ),
    "memories_embedding_hnsw": (
        "CREATE INDEX memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops)"
    ),
}

# Every memory's embedding, `--vectors random`: a random direction (cosine distance ignores the
# length). Correlated with the row (`m.memory_id`) so that each row draws its own. Random
# directions in 384 dimensions are all about equally far from any query, which no model
# produces: the hardest case for the HNSW graph, whose walk is then longest.
RANDOM_EMBEDDINGS = """
UPDATE memories m SET embedding = (
    SELECT array_agg(random() - 0.5)::real[] FROM generate_series(1, 384) WHERE m.memory_id IS NOT NULL
)::vector
"""
# `--vectors model` (the default): vectors where the model puts texts. ANCHORS texts of the
# corpus are embedded by the bundled model (the one the server embeds the queries with), and each
# memory's vector is one of them, chosen by the row, plus uniform noise of half-width $1 in every
# dimension; with MODEL_NOISE, a memory is at cosine 0.8 to its anchor and about 0.65 to the
# other memories of that anchor, as memories on one subject are. The text and the vector of a
# memory are unrelated: this bench measures what searching costs, not what it finds.
ANCHORS = 4_000
MODEL_NOISE = 0.13
CREATE_ANCHORS = "CREATE TEMP TABLE anchors (i int PRIMARY KEY, e real[] NOT NULL)"
MODEL_EMBEDDINGS = """
UPDATE memories m SET embedding = (
    SELECT array_agg(a.e[d] + (random() - 0.5) * $1 ORDER BY d)::real[]
    FROM anchors a, generate_series(1, 384) AS d
    WHERE a.i = abs(hashtext(m.memory_id::text)) % $2
)::vector
"""
# The model the server embeds queries with is the one the embeddings are recorded for.
RECORD_MODEL = """
INSERT INTO embedding_model (model_id, dimension, complete) VALUES ($1, 384, true)
ON CONFLICT (singleton) DO UPDATE SET model_id = excluded.model_id, complete = true
"""


def vocabulary(size: int, rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        length = min(12, max(3, round(rng.gauss(6.5, 2))))
        words.add("".join(rng.choices(LETTERS, weights=LETTER_WEIGHTS, k=length)))
    ordered = sorted(words)  # a set's order varies between runs; the data set must not
    rng.shuffle(ordered)
    return ordered


class Corpus:
    """Sentences over a Zipf-distributed vocabulary, like natural text: the most frequent
    ranks are real stop words (full-text search drops them, as it does in real text)."""

    def __init__(self, seed: int = 7, size: int = 30_000) -> None:
        self.rng = random.Random(seed)
        stop = sorted(STOP_WORDS)
        self.words = stop + [w for w in vocabulary(size, self.rng) if w not in STOP_WORDS][: size - len(stop)]
        self.content_from = len(stop)
        weights = [1 / (rank + 1) ** 1.07 for rank in range(len(self.words))]
        self.cumulative = list(itertools.accumulate(weights))
        self.content_cumulative = list(itertools.accumulate(weights[self.content_from :]))

    def sample(self, count: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=count)

    def sample_content_words(self, rng: random.Random, count: int) -> list[str]:
        """Words people search for: content words, as often as they occur in the text."""
        return rng.choices(self.words[self.content_from :], cum_weights=self.content_cumulative, k=count)

    def content(self) -> str:
        return " ".join(self.sample(self.rng.randint(10, 30))) + "."


async def load(conn: asyncpg.Connection, owner_id: str, agent_id: str, count: int, corpus: Corpus) -> float:
    await conn.execute("INSERT INTO agents (owner_id, agent_id) VALUES ($1, $2)", uuid.UUID(owner_id), agent_id)
    session_id = f"sess_bench_{agent_id}"
    await conn.execute(
        "INSERT INTO sessions (session_id, owner_id, agent_id, created_at, expires_at, end_reason, ended_at)"
        " VALUES ($1, $2, $3, now(), now(), 'deactivated', now())",
        session_id,
        uuid.UUID(owner_id),
        agent_id,
    )
    started = time.perf_counter()
    base = datetime.now(UTC) - timedelta(days=365)
    batch = 50_000
    for offset in range(0, count, batch):
        rows = [
            (
                uuid.uuid4(),
                uuid.UUID(owner_id),
                agent_id,
                session_id,
                corpus.rng.choice(TYPES),
                None,
                corpus.content(),
                [f"t{corpus.rng.randint(0, 49)}"],
                0.8,
                base + timedelta(seconds=offset + i),
            )
            for i in range(min(batch, count - offset))
        ]
        await conn.copy_records_to_table(
            "memories",
            records=rows,
            columns=[
                "memory_id",
                "owner_id",
                "agent_id",
                "session_id",
                "type",
                "title",
                "content",
                "tags",
                "confidence",
                "created_at",
            ],
        )
    return time.perf_counter() - started


def query_mix(corpus: Corpus, count: int) -> list[str]:
    """What agents ask: one to three content words, and some misspelled words."""
    rng = random.Random(11)
    queries = []
    for _ in range(count):
        roll = rng.random()
        if roll < 0.45:
            queries.append(corpus.sample_content_words(rng, 1)[0])
        elif roll < 0.8:
            queries.append(" ".join(corpus.sample_content_words(rng, 2)))
        elif roll < 0.9:
            queries.append(" ".join(corpus.sample_content_words(rng, 3)))
        else:  # a typo: one letter dropped
            word = corpus.sample_content_words(rng, 1)[0]
            cut = rng.randrange(1, len(word) - 1)
            queries.append(word[:cut] + word[cut + 1 :])
    return queries


async def measure(base: str, key: str, agent_id: str, queries: list[str], mode: str) -> list[tuple[float, str]]:
    """Each query once, one at a time: (milliseconds, the first result's first signal)."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        activated = await client.post(f"/api/v2/agents/{agent_id}/activate", headers={"Authorization": f"Bearer {key}"})
        token = activated.json()["session_token"]
        headers = {"X-Session-Token": token}
        for query in queries[:20]:  # warm the caches and the connection pool
            await client.post(
                f"/api/v2/agents/{agent_id}/recall", params={"query": query, "mode": mode}, headers=headers
            )
        latencies = []
        for query in queries:
            started = time.perf_counter()
            response = await client.post(
                f"/api/v2/agents/{agent_id}/recall", params={"query": query, "limit": 10, "mode": mode}, headers=headers
            )
            assert response.status_code == 200, response.text
            found = response.json()["memories"]
            latencies.append(((time.perf_counter() - started) * 1000, found[0]["signals"][0] if found else "none"))
        return latencies


async def throughput(base: str, key: str, agent_id: str, queries: list[str], mode: str, clients: int = 8) -> float:
    """Recalls per second with `clients` concurrent callers, each query once."""
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=httpx.Limits(max_connections=clients)) as client:
        activated = await client.post(f"/api/v2/agents/{agent_id}/activate", headers={"Authorization": f"Bearer {key}"})
        headers = {"X-Session-Token": activated.json()["session_token"]}
        pending = list(queries)

        async def caller() -> None:
            while pending:
                query = pending.pop()
                response = await client.post(
                    f"/api/v2/agents/{agent_id}/recall",
                    params={"query": query, "limit": 10, "mode": mode},
                    headers=headers,
                )
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        return len(queries) / (time.perf_counter() - started)


def report(mode: str, rows: list[tuple[str, int, list[tuple[float, str]]]]) -> float:
    print(f"mode {mode}")
    print(f"{'agent':<6} {'memories':>10} {'median ms':>10} {'p95 ms':>10} {'mean ms':>10}   by first signal: n")
    for name, count, measured in rows:
        lat = [ms for ms, _ in measured]
        signals = "  ".join(
            f"{signal} {n}"
            for signal in ("text", "typo", "semantic", "none")
            if (n := sum(1 for _, s in measured if s == signal))
        )
        print(
            f"{name:<6} {count:>10,} {statistics.median(lat):>10.2f} {percentile(lat, 0.95):>10.2f} "
            f"{statistics.fmean(lat):>10.2f}   {signals}"
        )
    ratio = statistics.median(ms for ms, _ in rows[1][2]) / statistics.median(ms for ms, _ in rows[0][2])
    print(f"median ratio big/small: {ratio:.2f} (target <= 2)")
    return ratio


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--modes", default="text,hybrid", help="recall modes to measure, comma-separated")
    parser.add_argument(
        "--vectors",
        choices=["model", "random"],
        default="model",
        help="memories' embeddings: round the model's vectors of corpus texts, or random directions",
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure on a kept database with the same agents")
    parser.add_argument("--load-only", action="store_true", help="build the database and keep it, measure nothing")
    parser.add_argument(
        "--shared-buffers",
        default="4GB",
        help="shared_buffers of the bench's own Postgres (not of a MEMANTO_BENCH_POSTGRES_URL server)",
    )
    args = parser.parse_args()
    SERVER_SETTINGS["shared_buffers"] = args.shared_buffers

    await run(args)


# The bench's owner and its memories per agent, in a database a previous run kept.
KEPT_AGENTS = """
SELECT a.owner_id::text AS owner_id, a.agent_id, (SELECT count(*) FROM memories m
        WHERE m.owner_id = a.owner_id AND m.agent_id = a.agent_id) AS memories
FROM agents a JOIN owners o ON o.owner_id = a.owner_id WHERE o.name = 'bench'
"""


async def kept(name: str, args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(url, owner id, API key) of a database a previous --keep run left with the same agents."""
    admin = await asyncpg.connect(database_url("postgres"))
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return None
    finally:
        await admin.close()
    url = database_url(name)
    await migrate(url)
    conn = await asyncpg.connect(url)
    try:
        agents = {r["agent_id"]: r for r in await conn.fetch(KEPT_AGENTS)}
        if {a: r["memories"] for a, r in agents.items()} != {"small": args.small, "big": args.big}:
            return None
        owner_id = agents["small"]["owner_id"]
        _, key = await create_key(conn, owner_id)
        return url, owner_id, key
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> None:
    name = f"memanto_bench_recall_{args.small}_{args.big}_{args.vectors}"
    found = await kept(name, args) if args.reuse else None
    if found is not None:
        url, owner_id, key = found
        print(f"reusing the database {name}: {args.small:,} + {args.big:,} memories, indexed")
        await measure_all(args, url, key)
        return
    url = await fresh_database(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            owner_id, key = await create_key(conn)
            for name in LOAD_INDEXES:
                await conn.execute(f"DROP INDEX IF EXISTS {name}")
            corpus = Corpus()
            small_s = await load(conn, owner_id, "small", args.small, corpus)
            big_s = await load(conn, owner_id, "big", args.big, corpus)
            started = time.perf_counter()
            await embed(conn, args.vectors, corpus)
            await conn.execute(RECORD_MODEL, load_local().model_id)
            vectors_s = time.perf_counter() - started
            # The HNSW graph of 1,000,000 384-dimension vectors needs about 3 GB to be built in
            # memory (much faster than once it spills); a parallel build uses both cores.
            await conn.execute("SET maintenance_work_mem = '4GB'")
            await conn.execute("SET max_parallel_maintenance_workers = 1")
            for statement in LOAD_INDEXES.values():
                await conn.execute(statement)
            # What autovacuum does to any table that has settled: hint bits, visibility map, statistics.
            await conn.execute("VACUUM (ANALYZE) memories")
            await conn.execute("VACUUM (ANALYZE) memory_lexicon")
            index_s = time.perf_counter() - started - vectors_s
        finally:
            await conn.close()
        print(
            f"loaded {args.small:,} + {args.big:,} memories in {small_s + big_s:.1f} s, their embeddings in "
            f"{vectors_s:.1f} s, indexed in {index_s:.1f} s"
        )
        if not args.load_only:
            await measure_all(args, url, key)
    finally:
        if not (args.keep or args.load_only):
            await drop_database(name)


async def embed(conn: asyncpg.Connection, vectors: str, corpus: Corpus) -> None:
    """Give every memory an embedding, as `--vectors` says (RANDOM_EMBEDDINGS, MODEL_EMBEDDINGS)."""
    if vectors == "random":
        await conn.execute(RANDOM_EMBEDDINGS)
        return
    model = load_local()
    texts = [corpus.content() for _ in range(ANCHORS)]
    anchors = [
        vector.tolist()
        for batch in range(0, ANCHORS, 64)
        for vector in await model.embed_documents(texts[batch : batch + 64])
    ]
    await conn.execute(CREATE_ANCHORS)
    await conn.copy_records_to_table("anchors", records=list(enumerate(anchors)), columns=["i", "e"])
    await conn.execute(MODEL_EMBEDDINGS, MODEL_NOISE, ANCHORS)


async def measure_all(args: argparse.Namespace, url: str, key: str) -> None:
    """Each phase (small agent, big agent, throughput) on a server of its own: the server keeps
    recent queries' embeddings, and a phase that found them made by the one before would skip the
    model, so every phase embeds each of its queries once, as new questions are."""
    queries = query_mix(Corpus(), args.queries)
    per_second: dict[str, float] = {}
    for mode in args.modes.split(","):
        with server(url) as base:
            small = await measure(base, key, "small", queries, mode)
        with server(url) as base:
            big = await measure(base, key, "big", queries, mode)
        report(mode, [("small", args.small, small), ("big", args.big, big)])
        with server(url) as base:
            per_second[mode] = await throughput(base, key, "big", queries, mode)
            again = await throughput(base, key, "big", queries, mode)
        print(
            f"throughput, big agent, 8 concurrent callers: {per_second[mode]:.0f} recalls/s "
            f"(the same queries again, their embeddings kept: {again:.0f} recalls/s)"
        )
    if "hybrid" in per_second and "text" in per_second:
        print(f"hybrid / text throughput: {per_second['hybrid'] / per_second['text']:.2f} (target >= 0.4)")


if __name__ == "__main__":
    asyncio.run(main())
