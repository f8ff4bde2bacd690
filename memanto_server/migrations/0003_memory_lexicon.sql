-- Fuzzy recall that scales with an agent's vocabulary, not with its number of memories.
--
-- Every word an agent's memories use is kept once per agent. A misspelled or partial
-- query word is corrected against this lexicon (pg_trgm word similarity, trigram index),
-- and the corrected words are searched with the ranked full-text index like any query.
-- This replaces trigram matching against whole memory contents, which had to look at
-- every candidate memory and cost seconds for an agent with a million memories.

-- levenshtein(): how many edits a suggestion is from the word typed.
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;

CREATE TABLE memory_lexicon (
    owner_id uuid NOT NULL,
    agent_id text NOT NULL,
    word     text NOT NULL,
    PRIMARY KEY (owner_id, agent_id, word),
    FOREIGN KEY (owner_id, agent_id) REFERENCES agents ON DELETE CASCADE
);
CREATE INDEX memory_lexicon_trgm ON memory_lexicon USING gin (word gin_trgm_ops);

-- Statement-level, so that a batch of memories learns its words in one insert. Words go
-- in sorted order: concurrent writers then take their row locks in the same order and
-- cannot deadlock on each other's new words.
CREATE FUNCTION memories_learn_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO memory_lexicon (owner_id, agent_id, word)
    SELECT DISTINCT n.owner_id, n.agent_id, w.word
    FROM new_rows n,
         unnest(tsvector_to_array(to_tsvector('simple', coalesce(n.title, '') || ' ' || n.content))) AS w(word)
    WHERE length(w.word) BETWEEN 3 AND 40
    ORDER BY 1, 2, 3
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER memories_learn_words_on_insert AFTER INSERT ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memories_learn_words();
CREATE TRIGGER memories_learn_words_on_update AFTER UPDATE ON memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION memories_learn_words();

-- Words of memories written before this migration.
INSERT INTO memory_lexicon (owner_id, agent_id, word)
SELECT DISTINCT m.owner_id, m.agent_id, w.word
FROM memories m,
     unnest(tsvector_to_array(to_tsvector('simple', coalesce(m.title, '') || ' ' || m.content))) AS w(word)
WHERE length(w.word) BETWEEN 3 AND 40
ON CONFLICT DO NOTHING;

DROP INDEX memories_content_trgm;
