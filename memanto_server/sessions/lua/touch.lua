-- Check that a token's session is the agent's live one, and count what it did.
-- KEYS[1]  the agent's session hash (see activate.lua); live while e > the server clock
-- ARGV     session_id, stored_delta, retrieved_delta
-- Returns  {1, created, expires, stored, retrieved, extensions} when live,
--          {0} when the agent has no live session (none kept, or the kept one has run out,
--          whichever session it is), {-1} when another, live session replaced it.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] or tonumber(h[3]) <= now then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {-1}
end
local stored, retrieved = h[4], h[5]
if ARGV[2] ~= '0' then
  stored = redis.call('HINCRBY', KEYS[1], 's', ARGV[2])
end
if ARGV[3] ~= '0' then
  retrieved = redis.call('HINCRBY', KEYS[1], 'r', ARGV[3])
end
return {1, h[2], h[3], stored, retrieved, h[6]}
