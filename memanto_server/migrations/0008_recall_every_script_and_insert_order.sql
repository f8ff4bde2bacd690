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
