-- memanto:no-transaction
-- The index of text_ngrams() (migration 0008): memories holding a character pair of a
-- query in a script written without spaces, found without reading the agent's memories.
-- Built CONCURRENTLY, so that writes go on meanwhile; a build that failed half-way leaves
-- an invalid index behind, which IF NOT EXISTS would take for done, so it is dropped first.
DROP INDEX CONCURRENTLY IF EXISTS memories_ngrams;
CREATE INDEX CONCURRENTLY memories_ngrams ON memories USING gin (text_ngrams(coalesce(title, '') || ' ' || content));

-- Recall no longer ranks in tiers (migration 0004): the index of strong lexemes has no
-- reader left, and every INSERT paid for it.
DROP INDEX CONCURRENTLY IF EXISTS memories_search_strong;
