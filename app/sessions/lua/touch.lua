-- Check that a token's session is the agent's live one, and count what it did.
-- KEYS[1]  the agent's session hash
-- ARGV     session_id, stored_delta, retrieved_delta
-- Returns  {1, created, expires, stored, retrieved, extensions} when live,
--          {0} when the agent has no live session, {-1} when another session replaced it.
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {-1}
end
local stored, retrieved = tonumber(h[4]), tonumber(h[5])
if ARGV[2] ~= '0' then
  stored = redis.call('HINCRBY', KEYS[1], 's', ARGV[2])
end
if ARGV[3] ~= '0' then
  retrieved = redis.call('HINCRBY', KEYS[1], 'r', ARGV[3])
end
return {1, h[2], h[3], stored, retrieved, h[6]}
