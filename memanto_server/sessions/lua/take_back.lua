-- Take back what a counted call did: its stored/retrieved counts, or its extension.
-- Used for a count whose memory was not stored (the insert failed, or replayed an earlier
-- one), and for a call whose replies were lost (the client was answered 503 and will send
-- it again): the call must then count as if it had never been made, however late its
-- first delivery reaches Redis.
-- KEYS[1]  the agent's session hash (store.py lists its fields)
-- ARGV     delivery id of the call, certain ('1' when the call is known to have run),
--          session_id, stored_delta, retrieved_delta, extend_ms, retain_ms
-- Returns  {1, created, expires, stored, retrieved, extensions} once taken back (also when
--          delivered again, or when the call never ran: it is then marked so that it never
--          will), {0} when the agent holds another session or none: nothing to take back.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x', 'd', 'k')
if not h[1] or h[1] ~= ARGV[3] then
  return {0}
end
local expires, stored, retrieved, extensions = h[3], h[4], h[5], h[6]
local ran, taken, ring = delivery(h[8], ARGV[1], true)
if not taken then
  if ran or ARGV[2] == '1' then
    if ARGV[4] ~= '0' then
      stored = redis.call('HINCRBY', KEYS[1], 's', -tonumber(ARGV[4]))
    end
    if ARGV[5] ~= '0' then
      retrieved = redis.call('HINCRBY', KEYS[1], 'r', -tonumber(ARGV[5]))
    end
    if ARGV[6] ~= '0' and not h[7] and tonumber(h[3]) > now then
      expires = string.format('%d', tonumber(h[3]) - tonumber(ARGV[6]))
      redis.call('HSET', KEYS[1], 'e', expires)
      extensions = redis.call('HINCRBY', KEYS[1], 'x', -1)
      redis.call('PEXPIREAT', KEYS[1], string.format('%d', tonumber(expires) + tonumber(ARGV[7])))
    end
  end
  redis.call('HSET', KEYS[1], 'k', ring)
end
return {1, h[2], expires, stored, retrieved, extensions}
