-- Start a session for one agent, ending whatever session it had.
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- ARGV     session_id, created_ms, expires_ms, max_expires_ms, retain_ms, delivery id
-- Returns  {'new', record…}, or {'again', record…} when this call had run before (its first
--          reply lost): the sessions it ended, for the history (records.lua): the one it
--          replaced, 'superseded' if it was live, 'expired' if it had run out, 'deactivated'
--          if it was a tombstone; then that one's own predecessor if it still carried one
--          (its activation may not have recorded it). A call delivered again answers what
--          its first delivery kept in p, q.
-- One script, one key: "one live session per agent" holds across instances.
-- The hash's native TTL is e + a retention window, so that an expired session's final
-- counters can still be recorded (expiry sweeper, next activation).
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x', 'd', 'k', 'p', 'q')
local ran, _, ring = delivery(h[8], ARGV[6])
if ran then
  if h[1] == ARGV[1] and h[9] then
    return unpack_record(h[9], h[10], {'again'})
  end
  return {'again'}
end
local reply, replaced = {'new'}, nil
if h[1] then
  local reason, ended = 'superseded', ARGV[2]
  if h[7] then
    reason, ended = 'deactivated', h[7]
  elseif tonumber(h[3]) <= now then
    reason, ended = 'expired', h[3]
  end
  replaced = {reason, h[1], h[2], h[3], h[4], h[5], h[6], ended}
  for _, value in ipairs(replaced) do
    reply[#reply + 1] = value
  end
  if h[9] then
    unpack_record(h[9], h[10], reply)
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'm', ARGV[4], 's', 0, 'r', 0, 'x', 0, 'k', ring)
if replaced then
  local p, q = pack_record(replaced)
  redis.call('HSET', KEYS[1], 'p', p, 'q', q)
end
redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(ARGV[3]) + tonumber(ARGV[5])))
return reply
