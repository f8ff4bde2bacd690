-- Owners and their API keys, agents, session history and memories.
-- Every row that belongs to someone carries owner_id, and every lookup filters on it:
-- an owner can never reach another owner's data.

CREATE TABLE owners (
    owner_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES owners ON DELETE CASCADE,
    name       text NOT NULL,
    key_hash   bytea NOT NULL,          -- sha256 of the key; the key itself is never stored
    prefix     text NOT NULL,           -- first characters, to recognise a key in listings
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
-- The real guard against two keys with one hash, and the index of every key lookup.
CREATE UNIQUE INDEX api_keys_key_hash ON api_keys (key_hash);
CREATE INDEX api_keys_owner ON api_keys (owner_id);

CREATE TABLE agents (
    owner_id        uuid NOT NULL REFERENCES owners ON DELETE CASCADE,
    agent_id        text NOT NULL CHECK (agent_id ~ '^[A-Za-z0-9_-]{1,64}$'),
    description     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_session_at timestamptz,
    -- One agent of a name per owner: activation's upsert and POST /agents rely on it.
    PRIMARY KEY (owner_id, agent_id)
);

CREATE TABLE sessions (
    session_id         text PRIMARY KEY,
    owner_id           uuid NOT NULL,
    agent_id           text NOT NULL,
    created_at         timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,  -- at activation; the final expiry once ended
    ended_at           timestamptz,
    -- NULL while live (Redis decides liveness); set once, by whoever ends it.
    end_reason         text CHECK (end_reason IN ('deactivated', 'superseded', 'expired')),
    memories_stored    integer NOT NULL DEFAULT 0,
    memories_retrieved integer NOT NULL DEFAULT 0,
    extensions         integer NOT NULL DEFAULT 0,
    metadata           jsonb,
    FOREIGN KEY (owner_id, agent_id) REFERENCES agents ON DELETE CASCADE
);
CREATE INDEX sessions_agent_created ON sessions (owner_id, agent_id, created_at DESC, session_id DESC);

CREATE TABLE memories (
    memory_id   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id    uuid NOT NULL,
    agent_id    text NOT NULL,
    session_id  text NOT NULL,
    type        text NOT NULL CHECK (type IN ('fact', 'preference', 'goal', 'decision', 'artifact', 'learning',
                                              'event', 'instruction', 'relationship', 'context', 'observation',
                                              'commitment', 'error')),
    title       text,
    content     text NOT NULL,
    tags        text[] NOT NULL DEFAULT '{}',
    confidence  real NOT NULL DEFAULT 0.8,
    source      text,
    metadata    jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    -- Title weighs more than content in ranking.
    search      tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
                    setweight(to_tsvector('english', content), 'B')) STORED,
    FOREIGN KEY (owner_id, agent_id) REFERENCES agents ON DELETE CASCADE
);
CREATE INDEX memories_search ON memories USING gin (search);
CREATE INDEX memories_agent_created ON memories (owner_id, agent_id, created_at DESC, memory_id DESC);
