-- Read an agent's session state without changing it.
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- Returns  {live_sid or '', sid, created, expires, stored, retrieved, extensions, ended or '',
--          p or '', q or ''}, or {''} when no state is kept.
-- The state of a session that has expired or ended is kept until the hash's TTL, so this
-- is also how the expiry sweeper reads a session's final counters.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x', 'd', 'p', 'q')
if not h[1] then
  return {''}
end
local live = ''
if not h[7] and tonumber(h[3]) > now then
  live = h[1]
end
return {live, h[1], h[2], h[3], h[4], h[5], h[6], h[7] or '', h[8] or '', h[9] or ''}
