-- End an agent's live session (deactivate, or the agent is being deleted).
-- KEYS[1]  live key, KEYS[2] state hash (see activate.lua)
-- ARGV     session_id, or '' to end whichever session is live
-- Returns  {1, sid, created, expires, stored, retrieved, extensions} when ended,
--          {0} when none was live, {-1} when the given session is no longer the live one.
local live = redis.call('GET', KEYS[1])
if not live then
  return {0}
end
if ARGV[1] ~= '' and live ~= ARGV[1] then
  return {-1}
end
local h = redis.call('HMGET', KEYS[2], 'sid', 'c', 'e', 's', 'r', 'x')
redis.call('DEL', KEYS[1], KEYS[2])
if not h[1] then
  return {0}
end
return {1, h[1], h[2], h[3], h[4], h[5], h[6]}
