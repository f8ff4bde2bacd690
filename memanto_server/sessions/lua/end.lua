-- End an agent's live session (deactivate, or the agent is being deleted).
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- ARGV     session_id, or '' to end whichever session is live; ended_ms
-- Returns  {1, record…} ended now; {2, record…} it had been ended before and its tombstone
--          is still kept (a retry, or a repeat: recording it again is a no-op in the history);
--          {0} when none is live, {-1} when the given session is no longer the live one.
--          record (records.lua): the ended session ('deactivated'), then the session it had
--          replaced if it still carried it (never used: its end may not be recorded).
-- The hash is not deleted but marked ended (d): a tombstone until its TTL, so that the end
-- and the final counters can be recorded by a retry, the next activation or the sweeper
-- when recording them failed. A session that has run out is left alone: the expiry
-- sweeper records it.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x', 'd', 'p', 'q')
if not h[1] then
  return {0}
end
local status, ended = 1, ARGV[2]
if h[7] then
  if ARGV[1] ~= '' and ARGV[1] ~= h[1] then
    return {0}
  end
  status, ended = 2, h[7]
elseif tonumber(h[3]) <= now then
  return {0}
elseif ARGV[1] ~= '' and h[1] ~= ARGV[1] then
  return {-1}
else
  redis.call('HSET', KEYS[1], 'd', ended)
end
local reply = {status, 'deactivated', h[1], h[2], h[3], h[4], h[5], h[6], ended}
if h[8] then
  unpack_record(h[8], h[9], reply)
end
return reply
