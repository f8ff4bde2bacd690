-- End an agent's live session (deactivate, or the agent is being deleted).
-- KEYS[1]  the agent's session hash (see activate.lua); live while e > the server clock
-- ARGV     session_id, or '' to end whichever session is live
-- Returns  {1, sid, created, expires, stored, retrieved, extensions} when ended,
--          {0} when none was live, {-1} when the given session is no longer the live one.
-- An ended session's hash is deleted: the caller records its end and final counters from
-- this reply. One that has run out is left alone: the expiry sweeper still needs its counters.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] or tonumber(h[3]) <= now then
  return {0}
end
if ARGV[1] ~= '' and h[1] ~= ARGV[1] then
  return {-1}
end
redis.call('DEL', KEYS[1])
return {1, h[1], h[2], h[3], h[4], h[5], h[6]}
