-- Recall's text candidates (SEARCH_TEXT in memanto_server/memories/repository.py) in one
-- function whose statement is planned once per connection, not at every recall.
--
-- As a statement of its own, the search was planned anew at each call: Postgres keeps a
-- prepared statement's custom plans while its generic plan looks dearer, and planning it (a
-- dozen indexes on `memories` to weigh) cost as much CPU as running it for an agent of a
-- few hundred memories. Here it runs with a generic plan, made once per connection (and
-- again when the table's statistics change). That plan serves every agent, so nothing in it
-- depends on the agent's size: each term's memories come from memories_holding() (migration
-- 0014), which still plans each call with the term itself (a rare word through the
-- full-text index, a common one by walking the agent's memories), and the memories found
-- are read by primary key, one by one. How many memories the agent has is counted by
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
