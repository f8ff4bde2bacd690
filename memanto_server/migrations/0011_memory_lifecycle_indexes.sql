-- Indexes of the lifecycle recalls (memanto_server/memories/lifecycle_repository.py).
--
-- Built inside the migration's transaction (the runner has no CONCURRENTLY step here): on a
-- big deployment, build them by hand with CREATE INDEX CONCURRENTLY before migrating, under
-- these names, and this migration finds them there.

-- recall/as-of: an agent's memories by the time they are about, newest first.
CREATE INDEX IF NOT EXISTS memories_agent_occurred
    ON memories (owner_id, agent_id, (coalesce(occurred_at, created_at)) DESC, memory_id DESC);

-- recall/changed-since: an agent's memories by their last change (a write, a patch, an
-- expiry or a restore all set updated_at).
CREATE INDEX IF NOT EXISTS memories_agent_updated
    ON memories (owner_id, agent_id, updated_at DESC, memory_id DESC);

-- recall/changed-since: memories whose valid_until passed in the window (a few rows carry one).
CREATE INDEX IF NOT EXISTS memories_agent_valid_until
    ON memories (owner_id, agent_id, valid_until) WHERE valid_until IS NOT NULL;
