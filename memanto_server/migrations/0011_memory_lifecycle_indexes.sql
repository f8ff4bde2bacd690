-- memanto:no-transaction
-- Indexes of the lifecycle recalls (memanto_server/memories/lifecycle_repository.py), built
-- CONCURRENTLY so that writes go on while they are built on a big table. Run statement by
-- statement and recorded after the last one; a build that stopped half-way leaves an invalid
-- index, which IF NOT EXISTS would take for done, so each is dropped first.

-- recall/as-of: an agent's memories by the time they are about, newest first.
DROP INDEX CONCURRENTLY IF EXISTS memories_agent_occurred;
CREATE INDEX CONCURRENTLY memories_agent_occurred
    ON memories (owner_id, agent_id, (coalesce(occurred_at, created_at)) DESC, memory_id DESC);

-- recall/changed-since: an agent's memories by their last change (a write, a patch, an
-- expiry or a restore all set updated_at).
DROP INDEX CONCURRENTLY IF EXISTS memories_agent_updated;
CREATE INDEX CONCURRENTLY memories_agent_updated
    ON memories (owner_id, agent_id, updated_at DESC, memory_id DESC);

-- recall/changed-since: memories whose valid_until passed in the window (a few rows carry one).
DROP INDEX CONCURRENTLY IF EXISTS memories_agent_valid_until;
CREATE INDEX CONCURRENTLY memories_agent_valid_until
    ON memories (owner_id, agent_id, valid_until) WHERE valid_until IS NOT NULL;
