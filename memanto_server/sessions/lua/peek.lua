-- Read an agent's session state without changing it.
-- KEYS[1]  the agent's session hash (see activate.lua); live while e > the server clock
-- Returns  {live_sid or '', sid, created, expires, stored, retrieved, extensions},
--          or {''} when no state is kept.
-- The state of a session that has expired is kept for a retention window, so this is
-- also how the expiry sweeper reads an expired session's final counters.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
if not h[1] then
  return {''}
end
local live = ''
if tonumber(h[3]) > now then
  live = h[1]
end
return {live, h[1], h[2], h[3], h[4], h[5], h[6]}
