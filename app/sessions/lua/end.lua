-- End an agent's live session (deactivate, or the agent is deleted).
-- KEYS[1]  the agent's session hash
-- ARGV     session_id, or '' to end whichever session is live
-- Returns  {1, sid, created, expires, stored, retrieved, extensions} when ended,
--          {0} when there was none, {-1} when the given session is no longer the live one.
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] then
  return {0}
end
if ARGV[1] ~= '' and h[1] ~= ARGV[1] then
  return {-1}
end
redis.call('DEL', KEYS[1])
return {1, h[1], h[2], h[3], h[4], h[5], h[6]}
