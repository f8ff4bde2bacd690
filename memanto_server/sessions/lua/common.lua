-- Prepended to every session script when it is loaded (store.py).
--
-- The agent's session hash, KEYS[1] of every script:
--   sid, c, e, m  the session id; created, expires, latest allowed expiry (ms since the epoch)
--   s, r, x       memories stored and retrieved, extensions
--   k             delivery ids of the last state-changing calls (below)
--   d             set once the session is ended (deactivated): the hash is then its tombstone,
--                 kept until its TTL so that a retried deactivate, the next activation and the
--                 expiry sweeper can still record its true end and counters
--   p, q          the session this one replaced (pack_record), until this one is first used:
--                 its use proves the activation answered, which it does only once it has
--                 recorded that session's end in the history
-- The session is live while it is not ended and e is after the Redis server's clock (TIME).

-- Delivery ids. A call whose reply was lost is delivered again (lib/redis_scripts.py), and
-- must not apply twice. Its id, 'PPPPPPnnn', names the pipeline that first carried it and
-- its position there. k keeps, per pipeline, the highest position that ran here, and
-- 'PPPPPPmmm' marks (mmm = position + MARK) of calls taken back; only the newest
-- MAX_ENTRIES entries, so that k stays one small listpack value (at most 64 bytes).
local ENTRY, MAX_ENTRIES, MARK = 9, 7, 500

local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Whether the call `id` ran here, and whether it was taken back.
local function delivered(ring, id)
  local ran, taken = false, false
  if not ring or id == '' then
    return ran, taken
  end
  local pipeline, position = string.sub(id, 1, 6), tonumber(string.sub(id, 7))
  for i = 1, #ring, ENTRY do
    if string.sub(ring, i, i + 5) == pipeline then
      local n = tonumber(string.sub(ring, i + 6, i + ENTRY - 1))
      if n == position + MARK then
        taken = true
      elseif n < MARK and n >= position then
        ran = true
      end
    end
  end
  return ran, taken
end

-- k with `entry` as its newest; `supersedes`: drop what this entry's pipeline had run before.
local function noted(ring, entry, supersedes)
  local kept = {}
  for i = 1, #(ring or ''), ENTRY do
    local old = string.sub(ring, i, i + ENTRY - 1)
    local same = string.sub(old, 1, 6) == string.sub(entry, 1, 6) and tonumber(string.sub(old, 7)) < MARK
    if not (supersedes and same) then
      kept[#kept + 1] = old
    end
  end
  kept[#kept + 1] = entry
  return table.concat(kept, '', math.max(1, #kept - MAX_ENTRIES + 1))
end

local function note_ran(ring, id)
  return noted(ring, id, true)
end

local function note_taken_back(ring, id)
  return noted(ring, string.sub(id, 1, 6) .. string.format('%03d', tonumber(string.sub(id, 7)) + MARK), false)
end

-- An ended session as replies carry it: {reason, sid, created, expires, stored, retrieved,
-- extensions, ended}; in a hash as p = 'reason sid created', q = 'expires ended stored
-- retrieved extensions' (two values of at most 64 bytes: the hash stays a listpack).
local function pack_record(rec)
  return rec[1] .. ' ' .. rec[2] .. ' ' .. rec[3], table.concat({rec[4], rec[8], rec[5], rec[6], rec[7]}, ' ')
end

local function unpack_record(p, q)
  local a, b = {}, {}
  for word in string.gmatch(p, '%S+') do
    a[#a + 1] = word
  end
  for word in string.gmatch(q, '%S+') do
    b[#b + 1] = word
  end
  return {a[1], a[2], a[3], b[1], b[3], b[4], b[5], b[2]}
end

local function append(list, items)
  for _, value in ipairs(items) do
    list[#list + 1] = value
  end
  return list
end
