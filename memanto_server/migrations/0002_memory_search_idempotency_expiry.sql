-- Memory that holds up: idempotent writes, fuzzy search fallback, expiry sweeping.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A retried remember with the same Idempotency-Key for the same agent stores nothing new.
-- This unique index is the real guard (not a check-then-insert): concurrent retries
-- meet here and all but one insert nothing.
ALTER TABLE memories ADD COLUMN idempotency_key text;
CREATE UNIQUE INDEX memories_idempotency
    ON memories (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Misspelled or partial words: trigram similarity when full-text search finds nothing.
CREATE INDEX memories_content_trgm ON memories USING gin (content gin_trgm_ops);

-- Filtering by tags (all must match) and listing by type.
CREATE INDEX memories_tags ON memories USING gin (tags);

-- The expiry sweeper looks only at sessions nobody has ended yet.
CREATE INDEX sessions_open_by_expiry ON sessions (expires_at) WHERE end_reason IS NULL;
