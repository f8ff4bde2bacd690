-- Recall whose first page does not cost one heap visit per match.
--
-- Recall ranks with ts_rank_cd(search, query, 32). When the query is a disjunction of plain
-- words (one word, `a or b or c`: what the `any` and `fuzzy` ways search), every cover is a
-- single position, so a memory's rank grows with the sum of the weights of the positions
-- where a query word occurs (title A = 1.0, content B = 0.4). The lowest rank a match can
-- have is that of one query word, once, in the content only; every other match ranks
-- strictly higher: it holds a query word in its title or more than once (a "strong" word,
-- below), or two different query words. For a frequent word nearly every match is of the
-- lowest rank, and among equal ranks recall orders newest first. So a page is
--   1. the matches that can rank higher, found by index (strong words, pairs of words)
--      and ranked as always; then
--   2. the newest matches, which an index walk over the agent's memories newest first
--      finds without reading all of them (the planner picks it for a frequent word).
-- Ranks, order and pages stay exactly those of ranking every match (SEARCH_RANKED_TIERS in
-- memanto_server/memories/repository.py). Other queries (phrases, `-word`, several words that must
-- all occur) rank every match as before.

-- The strong lexemes of a document: those in the title (weight A) or occurring more than
-- once. NULL when there are none.
CREATE FUNCTION tsvector_strong_lexemes(document tsvector) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT NULLIF(array_to_tsvector(ARRAY(
        SELECT d.lexeme FROM unnest(document) AS d
        WHERE 'A' = ANY(d.weights) OR cardinality(d.positions) >= 2)), ''::tsvector)
$$;

CREATE INDEX memories_search_strong ON memories USING gin (tsvector_strong_lexemes(search));

-- Whether a query is a disjunction of plain lexemes ('a' | 'b' | 'c' in tsquery text form)
-- and nothing else: no phrase, negation, conjunction, prefix or weight mark. Recall calls it
-- with a constant, which the planner folds; PL/pgSQL, so that each session compiles it once.
CREATE FUNCTION tsquery_is_disjunction(tsq tsquery) RETURNS boolean
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN tsq::text ~ '^''([^''\\]|''''|\\.)+''( \| ''([^''\\]|''''|\\.)+'')*$'
        AND numnode(tsq) = 2 * cardinality(string_to_array(tsq::text, ' | ')) - 1;
END $$;
