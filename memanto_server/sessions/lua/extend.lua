-- Push a live session's expiry back, never past its longest total lifetime.
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- ARGV     session_id, add_ms, retain_ms, delivery id
-- Returns  {1, created, previous_expires, new_expires, stored, retrieved, extensions} on success
--          (a call delivered again answers without adding again), {0} no live session,
--          {-1} superseded, {-2, expires, max_expires} over the lifetime, {-3} deactivated.
-- Read, check and write in one script: concurrent extends each add their hours, and a
-- session that has run out (kept only for its final counters) is never revived.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 'm', 's', 'r', 'x', 'd', 'k', 'p')
if not h[1] then
  return {0}
end
local live = not h[8] and tonumber(h[3]) > now
if h[1] ~= ARGV[1] then
  if live then
    return {-1}
  end
  return {0}
end
if h[8] then
  return {-3}
end
if not live then
  return {0}
end
local expires, add = tonumber(h[3]), tonumber(ARGV[2])
local ran, taken, ring = delivery(h[9], ARGV[4])
if ran or taken then
  return {1, h[2], string.format('%d', expires - add), h[3], h[5], h[6], h[7]}
end
local new_expires = expires + add
if new_expires > tonumber(h[4]) then
  return {-2, h[3], h[4]}
end
local new_text = string.format('%d', new_expires)
redis.call('HSET', KEYS[1], 'e', new_text, 'k', ring)
local extensions = redis.call('HINCRBY', KEYS[1], 'x', 1)
redis.call('PEXPIREAT', KEYS[1], string.format('%d', new_expires + tonumber(ARGV[3])))
if h[10] then
  redis.call('HDEL', KEYS[1], 'p', 'q')
end
return {1, h[2], h[3], new_text, h[5], h[6], extensions}
