-- Recall's text candidates leave out expired memories (migration 0010) unless asked for.
--
-- memories_holding() (migration 0008) takes one argument more, `include_expired`: when false,
-- a memory counts only while it holds now (least(expired_at, valid_until) is NULL or later
-- than now()). The filter is applied inside, before each term's `depth` newest memories are
-- taken, so expired memories never use up a term's share of candidates. A function's
-- arguments cannot change in place: the old one is dropped and the new one created in this
-- migration's transaction, so no recall ever finds neither.
DROP FUNCTION memories_holding(uuid, text, tsquery, text, text[], text[], timestamptz, timestamptz, tsquery, integer);

CREATE FUNCTION memories_holding(owner uuid, agent text, query tsquery, gram text, types text[], tags text[],
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
               AND ($10 OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11'
            USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth;
    ELSE
        RETURN QUERY EXECUTE
            'SELECT m.memory_id FROM memories m
             WHERE m.owner_id = $1 AND m.agent_id = $2 AND text_ngrams(coalesce(m.title, '''') || '' '' || m.content) @> ARRAY[$4]
               AND ($5::text[] IS NULL OR m.type = ANY($5)) AND ($6::text[] IS NULL OR m.tags @> $6)
               AND ($7::timestamptz IS NULL OR m.created_at > $7) AND ($8::timestamptz IS NULL OR m.created_at < $8)
               AND ($9::tsquery IS NULL OR NOT m.search @@ $9)
               AND ($10 OR coalesce(least(m.expired_at, m.valid_until) > now(), true))
             ORDER BY m.created_at DESC, m.memory_id DESC LIMIT $11'
            USING owner, agent, query, gram, types, tags, after, before, excluded, include_expired, depth;
    END IF;
END $$;
