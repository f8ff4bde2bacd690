-- Read an agent's session state without changing it.
-- KEYS[1]  live key, KEYS[2] state hash (see activate.lua)
-- Returns  {live_sid or '', sid, created, expires, stored, retrieved, extensions},
--          or {live_sid or ''} when no state is kept.
-- The state of a session that has expired is kept for a retention window, so this is
-- also how the expiry sweeper reads an expired session's final counters.
local live = redis.call('GET', KEYS[1]) or ''
local h = redis.call('HMGET', KEYS[2], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] then
  return {live}
end
return {live, h[1], h[2], h[3], h[4], h[5], h[6]}
