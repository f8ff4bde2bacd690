-- Recall by meaning: each memory's embedding (pgvector), the model that made them, and what
-- keeps them current.
--
-- `remember` stores a memory without its embedding (no embedding work on the request path);
-- the embedding worker fills `embedding` afterwards (memanto_server/embeddings/worker.py).
-- A NULL embedding means "to be embedded": a new memory, or one whose title or content
-- changed. The indexes of the column are built by 0007, concurrently.
-- memanto:requires vector >= 0.8.0

CREATE EXTENSION IF NOT EXISTS vector;

-- 384 dimensions: the default model's. Another model's dimension is set by
-- `memanto-server reembed` (memanto_reset_embeddings below). Adding a column with no
-- default rewrites nothing, however many memories there are.
ALTER TABLE memories ADD COLUMN embedding vector(384);

-- The model every stored embedding comes from: one row at most. `complete` is false while
-- `memanto-server reembed` still has memories to embed with it; the app refuses to start
-- with a model other than this one, or before a re-embedding is complete.
CREATE TABLE embedding_model (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    model_id    text NOT NULL,
    dimension   integer NOT NULL CHECK (dimension > 0),
    complete    boolean NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- A changed title or content makes the embedding stale: clear it, and the worker embeds the
-- memory again. A trigger rather than a clause in each UPDATE, so no write path can forget.
-- While the worker embeds a memory it holds the row (FOR UPDATE), so a PATCH waits for it
-- and then clears the fresh embedding: an embedding never outlives the text it was made from.
CREATE FUNCTION memories_embedding_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.embedding := NULL;
    RETURN NEW;
END $$;
CREATE TRIGGER memories_embedding_stale BEFORE UPDATE OF title, content ON memories
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.content IS DISTINCT FROM NEW.content)
    EXECUTE FUNCTION memories_embedding_stale();

-- Wakes the workers (LISTEN memanto_embeddings) when memories to embed are committed: one
-- notification per statement (a group of inserts is one), folded into one per transaction
-- by Postgres; sent at commit, so a worker never looks before the rows are visible.
CREATE FUNCTION memories_notify_embedding_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('memanto_embeddings', '');
    RETURN NULL;
END $$;
CREATE TRIGGER memories_notify_insert AFTER INSERT ON memories
    FOR EACH STATEMENT EXECUTE FUNCTION memories_notify_embedding_work();
CREATE TRIGGER memories_notify_update AFTER UPDATE OF title, content ON memories
    FOR EACH STATEMENT EXECUTE FUNCTION memories_notify_embedding_work();

-- A new model: every embedding goes at once (dropping and adding a column rewrites nothing),
-- with the column's indexes, and the column takes the model's dimension. `reembed` then
-- builds the indexes again (concurrently) and embeds every memory.
CREATE FUNCTION memanto_reset_embeddings(dimension integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    ALTER TABLE memories DROP COLUMN IF EXISTS embedding;
    EXECUTE format('ALTER TABLE memories ADD COLUMN embedding vector(%s)', dimension);
END $$;

-- Owner and agent always come together: statistics of the pair let the planner see how many
-- memories one agent has, and so choose between the vector index (a large agent) and
-- reading the agent's memories by the (owner, agent) index (a small one).
CREATE STATISTICS memories_owner_agent (ndistinct, dependencies, mcv) ON owner_id, agent_id FROM memories;
