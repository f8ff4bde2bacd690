-- memanto:no-transaction
-- The indexes of memories.embedding, built CONCURRENTLY: on a deployment with millions of
-- memories, writes go on while they are built. Run outside a transaction, statement by
-- statement, and recorded after the last one (memanto_server/lib/migrations.py). If a run
-- stops half-way, the next starts from the top: a concurrent build that failed leaves an
-- invalid index behind, which IF NOT EXISTS would take for done, so each is dropped first.

-- Nearest neighbours by cosine distance (pgvector HNSW). Every query is for one owner and
-- agent: recall's KNN query walks the graph with iterative scans (hnsw.iterative_scan,
-- pgvector >= 0.8) until enough of that agent's memories are found, within
-- hnsw.max_scan_tuples, or the planner reads a small agent's memories by its own index.
DROP INDEX CONCURRENTLY IF EXISTS memories_embedding_hnsw;
CREATE INDEX CONCURRENTLY memories_embedding_hnsw ON memories USING hnsw (embedding vector_cosine_ops);

-- The worker's queue: memories without an embedding, oldest first. Small once drained.
DROP INDEX CONCURRENTLY IF EXISTS memories_unembedded;
CREATE INDEX CONCURRENTLY memories_unembedded ON memories (created_at, memory_id) WHERE embedding IS NULL;
