-- The index of text_ngrams() (migration 0008): memories holding a character pair of a
-- query in a script written without spaces, found without reading the agent's memories.
CREATE INDEX memories_ngrams ON memories USING gin (text_ngrams(coalesce(title, '') || ' ' || content));

-- Recall no longer ranks in tiers (migration 0004): the index of strong lexemes has no
-- reader left, and every INSERT paid for it.
DROP INDEX memories_search_strong;
