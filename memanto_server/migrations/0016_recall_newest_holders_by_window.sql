-- Recall's text candidates for an agent with many memories: a word's newest holders found
-- without reading every memory that holds it, nor every memory newer than them.
--
-- A term's candidates are its `depth` newest holders (memories_holding(), migration 0015),
-- found one of two ways: by walking the agent's memories newest first until `depth` hold the
-- word (a common word), or by reading every memory the full-text index says holds it and
-- keeping the newest (a rare one). For a word between the two in an agent of a million
-- memories (held by a few thousand), both read thousands of rows: the walk 100/share of them,
-- the index every holder, each on a page of its own. Measured on bench/recall_scale.py's
-- agent of 1,000,000 memories, such a word took 20 to 60 ms, which is what made the text
-- side of recall grow with the agent.
--
-- memories_holding() with one argument more, `by_window`, reads the agent's memories in
-- windows of time, newest first, and in each lets the planner weigh the same two ways
-- against a third: the intersection of the full-text index with the agent's index on
-- creation time (BitmapAnd), which reads only the holders inside the window. The first
-- window is the newest 64th of the time the agent's memories span; if it holds fewer than
-- `depth`, the holders found there say how often the word occurs, and the second window is
-- sized to hold twice the rest; whatever is still missing comes from everything older. The
-- windows do not overlap and are taken newest first, so the result is the same `depth`
-- newest holders as before, row for row.
--
-- recall_text_candidates() with one argument more, `by_window`, passed on to every term:
-- SEARCH_TEXT sets it for an agent of at least 10,000 memories (the count it already made for
-- the terms' rarity). Below that a word's holders are few and the windows' extra statements
-- would cost more than they save.
--
-- Both are new overloads: the functions of migration 0015 stay for the processes of the
-- previous release that serve while this migration runs (docs/operations.md: add first,
-- drop a release later).

CREATE FUNCTION memories_holding(owner uuid, agent text, query tsquery, gram text, types text[], tags text[],
                                 after timestamptz, before timestamptz, excluded tsquery, include_expired boolean,
                                 depth integer, by_window boolean)
    RETURNS TABLE (memory_id uuid) LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
    -- $12 and $13: the window, from (inclusive) and to (exclusive); NULL: open.
    holders CONSTANT text := format(
        'SELECT m.memory_id FROM memories m
         WHERE m.owner_id = $1 AND m.agent_id = $2 AND %s
           AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
           AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
           AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
           AND ($10 OR ((m.expired_at IS NULL OR m.expired_at > now())
                     AND (m.valid_until IS NULL OR m.valid_until > now())))
           AND ($12::timestamptz IS NULL OR m.created_at >= $12) AND ($13::timestamptz IS NULL OR m.created_at < $13)
         ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11',
        CASE WHEN gram IS NULL THEN 'm.search @@ $3'
             ELSE 'text_ngrams(coalesce(m.title, '''') || '' '' || m.content) @> ARRAY[$4]' END);
    newest timestamptz;
    oldest timestamptz;
    recent_from timestamptz;
    older_from timestamptz;
    found integer;
    more integer;
BEGIN
    IF by_window THEN
        SELECT m.created_at INTO newest FROM memories m
        WHERE m.owner_id = owner AND m.agent_id = agent
          AND (after IS NULL OR m.created_at > after) AND (before IS NULL OR m.created_at < before)
        ORDER BY m.created_at DESC, m.memory_id DESC LIMIT 1;
        SELECT m.created_at INTO oldest FROM memories m
        WHERE m.owner_id = owner AND m.agent_id = agent
          AND (after IS NULL OR m.created_at > after) AND (before IS NULL OR m.created_at < before)
        ORDER BY m.created_at, m.memory_id LIMIT 1;
        IF newest IS NULL THEN
            RETURN;
        END IF;
        recent_from := newest - (newest - oldest) / 64;
    END IF;
    IF recent_from IS NULL OR recent_from <= oldest THEN
        RETURN QUERY EXECUTE holders
            USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth,
                  NULL::timestamptz, NULL::timestamptz;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE holders
        USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth,
              recent_from, NULL::timestamptz;
    GET DIAGNOSTICS found = ROW_COUNT;
    IF found >= depth THEN
        RETURN;
    END IF;
    -- Few holders in the newest window: a rare word, or one rare lately. With a handful found,
    -- the next window is sized to hold twice what is missing at the rate they came; with fewer,
    -- the rate says nothing and the rest is read at once.
    IF found >= 4 THEN
        older_from := recent_from - (newest - recent_from) * (2.0 * (depth - found) / found);
        IF older_from > oldest THEN
            RETURN QUERY EXECUTE holders
                USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired,
                      depth - found, older_from, recent_from;
            GET DIAGNOSTICS more = ROW_COUNT;
            found := found + more;
            IF found >= depth THEN
                RETURN;
            END IF;
            recent_from := older_from;
        END IF;
    END IF;
    RETURN QUERY EXECUTE holders
        USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth - found,
              NULL::timestamptz, recent_from;
END $$;

CREATE FUNCTION recall_text_candidates(owner uuid, agent text, terms text[], kinds text[], excluded text,
                                       of_types text[], with_tags text[], created_after timestamptz,
                                       created_before timestamptz, depth integer, include_expired boolean,
                                       by_window boolean)
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
                                      include_expired, depth, by_window) AS h
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
