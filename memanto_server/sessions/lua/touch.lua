-- Check that a token's session is the agent's live one, and count what it did.
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- ARGV     session_id, stored_delta, retrieved_delta, delivery id ('' when nothing is counted)
-- Returns  {1, created, expires, stored, retrieved, extensions} when live (a call counts once
--          however often it is delivered), {0} when the agent has no live session (none
--          kept, or the kept one has run out or ended, whichever session it is), {-1} when
--          another, live session replaced it, {-3} when this session was deactivated.
-- Its first use also drops what the activation kept of the session it replaced (p, q): the
-- token's use proves that the activation answered, which it does once it has recorded it.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x', 'd', 'k', 'p')
if not h[1] then
  return {0}
end
local live = not h[7] and tonumber(h[3]) > now
if h[1] ~= ARGV[1] then
  if live then
    return {-1}
  end
  return {0}
end
if h[7] then
  return {-3}
end
if not live then
  return {0}
end
local stored, retrieved = h[4], h[5]
if ARGV[4] ~= '' then
  local ran, taken, ring = delivery(h[8], ARGV[4])
  if not ran and not taken then
    if ARGV[2] ~= '0' then
      stored = redis.call('HINCRBY', KEYS[1], 's', ARGV[2])
    end
    if ARGV[3] ~= '0' then
      retrieved = redis.call('HINCRBY', KEYS[1], 'r', ARGV[3])
    end
    redis.call('HSET', KEYS[1], 'k', ring)
  end
end
if h[9] then
  redis.call('HDEL', KEYS[1], 'p', 'q')
end
return {1, h[2], h[3], stored, retrieved, h[6]}
