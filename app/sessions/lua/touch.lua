-- Check that a token's session is the agent's live one, and count what it did.
-- KEYS[1]  live key, KEYS[2] state hash (see activate.lua)
-- ARGV     session_id, stored_delta, retrieved_delta
-- Returns  {1, created, expires, stored, retrieved, extensions} when live,
--          {0} when the agent has no live session, {-1} when another session replaced it.
local live = redis.call('GET', KEYS[1])
if not live then
  return {0}
end
if live ~= ARGV[1] then
  return {-1}
end
local h = redis.call('HMGET', KEYS[2], 'c', 'e', 's', 'r', 'x')
if not h[1] then
  return {0}
end
local stored, retrieved = h[3], h[4]
if ARGV[2] ~= '0' then
  stored = redis.call('HINCRBY', KEYS[2], 's', ARGV[2])
end
if ARGV[3] ~= '0' then
  retrieved = redis.call('HINCRBY', KEYS[2], 'r', ARGV[3])
end
return {1, h[1], h[2], stored, retrieved, h[5]}
