-- The request an Idempotency-Key was first used with, as a SHA-256 of the memory it asked to
-- store (its fields in a canonical JSON form). A retry with the same key and the same request
-- is answered with the first result; the same key with another request is refused (422), as
-- the IETF idempotency-key draft says. The fields of the row cannot tell: a PATCH may change
-- them after the first request. NULL for rows without a key, and for rows stored before this
-- migration (their key replays whatever the request, as it did then).
ALTER TABLE memories ADD COLUMN idempotency_fingerprint text;
