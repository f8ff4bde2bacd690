-- Push a live session's expiry back, never past its longest total lifetime.
-- KEYS[1]  the agent's session hash (see activate.lua); live while e > the server clock
-- ARGV     session_id, add_ms, retain_ms
-- Returns  {1, created, previous_expires, new_expires, stored, retrieved, extensions} on success,
--          {0} no live session, {-1} superseded, {-2, expires, max_expires} over the lifetime.
-- Read, check and write in one script: concurrent extends each add their hours, and a
-- session that has run out (kept only for its final counters) is never revived.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 'm', 's', 'r')
if not h[1] or tonumber(h[3]) <= now then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {-1}
end
local expires, max_expires = tonumber(h[3]), tonumber(h[4])
local new_expires = expires + tonumber(ARGV[2])
if new_expires > max_expires then
  return {-2, h[3], h[4]}
end
local new_text = string.format('%d', new_expires)
redis.call('HSET', KEYS[1], 'e', new_text)
local extensions = redis.call('HINCRBY', KEYS[1], 'x', 1)
redis.call('PEXPIREAT', KEYS[1], string.format('%d', new_expires + tonumber(ARGV[3])))
return {1, h[2], h[3], new_text, h[5], h[6], extensions}
