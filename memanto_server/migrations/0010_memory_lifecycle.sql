-- The memory lifecycle: the time a memory is about, until when it holds, and its expiry.
--
-- occurred_at  the time the memory is about. History brought over from another system keeps
--              its own dates here, while created_at stays the time this server stored it.
--              Rows stored before this migration have NULL, read as created_at
--              (coalesce(occurred_at, created_at)): no rewrite of a big table.
-- valid_until  the memory stops holding then (NULL: it holds until expired by hand).
-- expired_at   when the memory was expired by hand (NULL: not expired); expired_reason says why.
--
-- A memory is expired at time T when least(expired_at, valid_until) <= T. Expired memories are
-- kept: recall and answer leave them out unless asked, and `restore` clears both fields.
ALTER TABLE memories
    ADD COLUMN occurred_at    timestamptz,
    ADD COLUMN valid_until    timestamptz,
    ADD COLUMN expired_at     timestamptz,
    ADD COLUMN expired_reason text;

-- New rows are about the time they are stored unless the writer says otherwise.
ALTER TABLE memories ALTER COLUMN occurred_at SET DEFAULT now();
