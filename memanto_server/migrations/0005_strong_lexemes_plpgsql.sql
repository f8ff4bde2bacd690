-- Cheaper inserts: the index expression of memories_search_strong (migration 0004), rewritten
-- in PL/pgSQL with the same result.
--
-- As a LANGUAGE sql function that cannot be inlined (its body holds a subquery), Postgres
-- parsed and planned its body again in every INSERT statement: about 60 µs of Postgres CPU
-- per statement, a fifth of a one-row `remember` (bench/README.md, "Group commit"). A
-- PL/pgSQL function plans its query once per connection. Same name, arguments and result,
-- so the index stays valid and recall's queries match it as before; nothing is rebuilt.
CREATE OR REPLACE FUNCTION tsvector_strong_lexemes(document tsvector) RETURNS tsvector
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN NULLIF(array_to_tsvector(ARRAY(
        SELECT d.lexeme FROM unnest(document) AS d
        WHERE 'A' = ANY(d.weights) OR cardinality(d.positions) >= 2)), ''::tsvector);
END $$;
