-- Start a session for one agent, ending whatever session it had.
-- KEYS[1]  the agent's session hash, its only key: sid, c (created), e (expires), m (max expiry),
--          all ms since the epoch, and the counters s, r, x (stored, retrieved, extensions).
--          The session is live while e is after the Redis server's clock (TIME); the hash's
--          native TTL is e + a retention window, so that an expired session's final
--          counters can still be recorded (expiry sweeper, next activation).
-- ARGV     session_id, created_ms, expires_ms, max_expires_ms, retain_ms
-- Returns  {} when the agent had no session state, else
--          {kind, sid, created, expires, stored, retrieved, extensions} with kind
--          'superseded' (it was live) or 'expired' (it had run out, not yet recorded).
-- One script, one key: "one live session per agent" holds across instances.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local old = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'm', ARGV[4], 's', 0, 'r', 0, 'x', 0)
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(ARGV[3]) + tonumber(ARGV[5])))
if not old[1] then
  return {}
end
local kind = 'expired'
if tonumber(old[3]) > now then
  kind = 'superseded'
end
return {kind, old[1], old[2], old[3], old[4], old[5], old[6]}
