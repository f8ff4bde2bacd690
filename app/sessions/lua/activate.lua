-- Start a session for one agent, ending whatever session it had.
-- KEYS[1]  live key: the live session id; its native TTL is the session's expiry
-- KEYS[2]  state hash: sid, created, expires, max expiry, counters; outlives the live key
--          by a retention window so that an expired session's final counters can be recorded
-- ARGV     session_id, created_ms, expires_ms, max_expires_ms, retain_ms
-- Returns  {} when the agent had no session state, else
--          {kind, sid, created, expires, stored, retrieved, extensions} with kind
--          'superseded' (it was live) or 'expired' (it had run out, not yet recorded).
-- One script, one hash tag: "one live session per agent" holds across instances.
local live = redis.call('GET', KEYS[1])
local old = redis.call('HMGET', KEYS[2], 'sid', 'c', 'e', 's', 'r', 'x')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'sid', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'm', ARGV[4], 's', 0, 'r', 0, 'x', 0)
redis.call('PEXPIREAT', KEYS[2], tonumber(ARGV[3]) + tonumber(ARGV[5]))
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[3])
if not old[1] then
  return {}
end
local kind = 'expired'
if live and live == old[1] then
  kind = 'superseded'
end
return {kind, old[1], old[2], old[3], old[4], old[5], old[6]}
