-- Recall in every script, and the order of the rows of one batch.
--
-- Full-text search splits text into words at spaces and punctuation. Chinese, Japanese,
-- Thai (and Lao, Khmer, Myanmar) are written without spaces between words, so a whole
-- sentence would be one "word" that no query matches; Korean words carry their particles.
-- For those scripts recall also matches overlapping character pairs (a lone character by
-- itself), as CJK search engines do: text_ngrams() makes them of a memory's title and
-- content, memanto_server/memories/search/grammar.py makes them of a query the same way.
-- Other scripts (Cyrillic, Arabic, Devanagari, Greek, …) are written with spaces and are
-- in the `search` column already, whole words lower-cased.
--
-- text_ngrams() returns NULL at once for text without such characters, so an English
-- memory costs one regular-expression test more per INSERT. Its index is built by
-- migration 0009.

CREATE FUNCTION text_ngrams(document text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    IF document !~ '[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]' THEN
        RETURN NULL;
    END IF;
    -- Pairs starting at even offsets of a run, pairs starting at odd offsets, lone characters.
    RETURN ARRAY(
        SELECT m[1] FROM regexp_matches(document,
            '([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2})',
            'g') AS m
        UNION
        SELECT m[1] FROM regexp_matches(document,
            '(?<=[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]{2})',
            'g') AS m
        UNION
        SELECT m[1] FROM regexp_matches(document,
            '(?<![\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])([\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])(?![\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])',
            'g') AS m);
END $$;

-- The rows of one batch (one INSERT) share a creation time; `seq` keeps the order they
-- were given in, so that of two conflicting facts stored in one batch the later ranks
-- first, and ties are broken the same way every time. Added without a default and given
-- one afterwards, so that the table is not rewritten: memories stored before this
-- migration keep a NULL `seq` and order by creation time and memory id, as before.
CREATE SEQUENCE memories_seq;
ALTER TABLE memories ADD COLUMN seq bigint;
ALTER TABLE memories ALTER COLUMN seq SET DEFAULT nextval('memories_seq');
ALTER SEQUENCE memories_seq OWNED BY memories.seq;

-- The newest `depth` memories of one agent that hold one recall term (a full-text query, or
-- a character pair when `gram` is not NULL), after recall's filters: how recall finds its
-- text candidates (SEARCH_TEXT in memanto_server/memories/repository.py), one call per term.
-- EXECUTE plans each call with the term itself, so that the planner, which knows how
-- common a word is (the statistics of `search`), finds a rare word through the full-text
-- index and a common one by walking the agent's memories newest first until `depth` are
-- found; one plan for every term would read every match of a common word, or every
-- memory of a large agent for a rare one. Recall's filters are arguments: a new filter on
-- memories is added here and in SEARCH_TEXT.
CREATE FUNCTION memories_holding(owner uuid, agent text, query tsquery, gram text, types text[], tags text[],
                                 after timestamptz, before timestamptz, excluded tsquery, depth integer)
    RETURNS TABLE (memory_id uuid) LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
BEGIN
    IF gram IS NULL THEN
        RETURN QUERY EXECUTE
            'SELECT m.memory_id FROM memories m
             WHERE m.owner_id = $1 AND m.agent_id = $2 AND m.search @@ $3
               AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
               AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
               AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $10'
            USING owner, agent, query, gram, types, tags, after, before, excluded, depth;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT m.memory_id FROM memories m
             WHERE m.owner_id = $1 AND m.agent_id = $2 AND text_ngrams(coalesce(m.title, '''') || '' '' || m.content) @> ARRAY[$4]
               AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
               AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
               AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $10'
            USING owner, agent, query, gram, types, tags, after, before, excluded, depth;
    END IF;
END $$;
