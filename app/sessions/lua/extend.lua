-- Push a live session's expiry back, never past its longest total lifetime.
-- KEYS[1]  live key, KEYS[2] state hash (see activate.lua)
-- ARGV     session_id, add_ms, retain_ms
-- Returns  {1, created, previous_expires, new_expires, stored, retrieved, extensions} on success,
--          {0} no live session, {-1} superseded, {-2, expires, max_expires} over the lifetime.
-- Read, check and write in one script: concurrent extends each add their hours.
local live = redis.call('GET', KEYS[1])
if not live then
  return {0}
end
if live ~= ARGV[1] then
  return {-1}
end
local h = redis.call('HMGET', KEYS[2], 'c', 'e', 'm', 's', 'r')
if not h[1] then
  return {0}
end
local expires, max_expires = tonumber(h[2]), tonumber(h[3])
local new_expires = expires + tonumber(ARGV[2])
if new_expires > max_expires then
  return {-2, h[2], h[3]}
end
local new_text = string.format('%d', new_expires)
redis.call('HSET', KEYS[2], 'e', new_text)
local extensions = redis.call('HINCRBY', KEYS[2], 'x', 1)
redis.call('PEXPIREAT', KEYS[1], new_text)
redis.call('PEXPIREAT', KEYS[2], string.format('%d', new_expires + tonumber(ARGV[3])))
return {1, h[1], h[2], new_text, h[4], h[5], extensions}
