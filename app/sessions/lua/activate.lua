-- Start a session for one agent, ending the live one if there is one.
-- KEYS[1]  the agent's session hash ({owner:agent} hash tag)
-- ARGV     session_id, created_ms, expires_ms, max_expires_ms
-- Returns  the superseded session as {sid, created, expires, stored, retrieved, extensions},
--          or an empty array when the agent had none.
-- Replacing the hash in one script is what makes "one live session per agent" hold
-- however many instances activate the same agent at once.
local old = redis.call('HMGET', KEYS[1], 'sid', 'c', 'e', 's', 'r', 'x')
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'sid', ARGV[1], 'c', ARGV[2], 'e', ARGV[3], 'm', ARGV[4], 's', 0, 'r', 0, 'x', 0)
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
if not old[1] then
  return {}
end
return old
