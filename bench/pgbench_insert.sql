-- The statement `remember` runs (memanto_server/memories/repository.py), with the literal values of
-- bench/wrk/remember.lua. bench/run.py creates the owner and agent in a scratch database.
INSERT INTO memories (owner_id, agent_id, session_id, type, title, content, tags, confidence, source, metadata,
                      idempotency_key)
VALUES ('00000000-0000-4000-8000-00000000b0b0', 'pgbench-agent', 'sess_pgbench', 'preference', 'Contact',
        'Customer prefers email over phone calls for billing questions', '{contact,billing}', 0.8, NULL, NULL, NULL)
ON CONFLICT (owner_id, agent_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING memory_id, created_at;
