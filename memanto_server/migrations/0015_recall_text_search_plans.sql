-- Recall's text candidates (SEARCH_TEXT in memanto_server/memories/repository.py): fewer
-- plans per recall, and plans that walk an agent's memories when a word is common.
--
-- memories_holding() (migration 0014) leaves out expired memories with a condition the
-- planner cannot see into (coalesce(least(expired_at, valid_until) > now(), true)): it
-- guessed that it keeps half of the rows, so that walking the agent's memories newest first
-- looked twice as long as it is, and a common word was found by reading every memory that
-- holds it (or the whole table, while it is small) and sorting them. The same condition,
-- written with the columns themselves (LEAST skips NULLs: both dates NULL or later than now),
-- is estimated from their statistics (nearly every memory has neither). Same arguments,
-- same rows.
CREATE OR REPLACE FUNCTION memories_holding(owner uuid, agent text, query tsquery, gram text, types text[], tags text[],
                                 after timestamptz, before timestamptz, excluded tsquery, include_expired boolean,
                                 depth integer)
    RETURNS TABLE (memory_id uuid) LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF gram IS NULL THEN
        RETURN QUERY EXECUTE
            'SELECT m.memory_id FROM memories m
             WHERE m.owner_id = $1 AND m.agent_id = $2 AND m.search @@ $3
               AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
               AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
               AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
               AND ($10 OR ((m.expired_at IS NULL OR m.expired_at > now())
                         AND (m.valid_until IS NULL OR m.valid_until > now())))
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11'
            USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT m.memory_id FROM memories m
             WHERE m.owner_id = $1 AND m.agent_id = $2 AND text_ngrams(coalesce(m.title, '''') || '' '' || m.content) @> ARRAY[$4]
               AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
               AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
               AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
               AND ($10 OR ((m.expired_at IS NULL OR m.expired_at > now())
                         AND (m.valid_until IS NULL OR m.valid_until > now())))
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11'
            USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth;
    END IF;
END $$;

-- The search in one function whose statement is planned once per connection, not at every
-- recall.
--
-- As a statement of its own, the search was planned anew at each call: Postgres keeps a
-- prepared statement's custom plans while its generic plan looks dearer, and planning it (a
-- dozen indexes on `memories` to weigh) cost as much CPU as running it for an agent of a
-- few hundred memories. Here it runs with a generic plan, made once per connection (and
-- again when the table's statistics change). That plan serves every agent, so nothing in it
-- depends on the agent's size: each term's memories come from memories_holding() (above),
-- which still plans each call with the term itself (a rare word through the full-text
-- index, a common one by walking the agent's memories), and the memories found are read by
-- primary key, one by one. How many memories the agent has is counted by
-- SEARCH_TEXT itself, whose plan knows the agent.
--
-- Returns one row per memory holding any term: its strength of every term (ts_rank_cd
-- without normalisation; 1 or 0 for a character pair), and on every row how many memories
-- hold each term (up to `depth`) and whether full-text search keeps each term at all (stop
-- words: no).
CREATE FUNCTION recall_text_candidates(owner uuid, agent text, terms text[], kinds text[], excluded text,
                                       of_types text[], with_tags text[], created_after timestamptz,
                                       created_before timestamptz, depth integer, include_expired boolean)
    RETURNS TABLE (memory_id uuid, created_at timestamptz, seq bigint, strengths float8[], frequencies int[],
                   searchable boolean[])
    LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    RETURN QUERY
    WITH term AS MATERIALIZED (
        SELECT t.i, t.kind, t.text,
               CASE WHEN t.kind = 'phrase' THEN phraseto_tsquery('english', t.text)
                    WHEN t.kind <> 'gram' THEN plainto_tsquery('english', t.text) END AS query
        FROM unnest(terms, kinds) WITH ORDINALITY AS t(text, kind, i)
    ),
    left_out AS MATERIALIZED (
        SELECT NULLIF(websearch_to_tsquery('english', excluded), ''::tsquery) AS query
    ),
    hit AS MATERIALIZED (
        SELECT term.i, h.memory_id
        FROM term, left_out,
             LATERAL memories_holding(owner, agent, term.query, CASE WHEN term.kind = 'gram' THEN term.text END,
                                      of_types, with_tags, created_after, created_before, left_out.query,
                                      include_expired, depth) AS h
        WHERE term.kind = 'gram' OR numnode(term.query) > 0
    )
    SELECT found.memory_id, found.created_at, found.seq, found.strengths,
           (SELECT array_agg(coalesce(h.n, 0)::int ORDER BY term.i)
            FROM term LEFT JOIN (SELECT hit.i, count(*) AS n FROM hit GROUP BY hit.i) h USING (i)),
           (SELECT array_agg(term.kind = 'gram' OR numnode(term.query) > 0 ORDER BY term.i) FROM term)
    FROM (SELECT DISTINCT hit.memory_id FROM hit) AS held,
         LATERAL (
            -- LIMIT 1 keeps this a lookup by primary key per held memory, never a join
            -- planned over all of the agent's memories.
            SELECT m.memory_id, m.created_at, m.seq,
                   ARRAY(SELECT CASE WHEN term.kind = 'gram'
                                     THEN (term.text = ANY(text_ngrams(coalesce(m.title, '') || ' ' || m.content)))::int::float8
                                     WHEN numnode(term.query) > 0 AND m.search @@ term.query
                                     THEN ts_rank_cd(m.search, term.query, 0)::float8
                                     ELSE 0 END
                         FROM term ORDER BY term.i) AS strengths
            FROM memories m
            WHERE m.memory_id = held.memory_id AND m.owner_id = owner AND m.agent_id = agent
            LIMIT 1
         ) AS found;
END $$;
