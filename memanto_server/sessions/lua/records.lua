-- Ended sessions in replies and in the hash (prepended to the scripts that use them; store.py).
-- In a reply: 8 values {reason, sid, created, expires, stored, retrieved, extensions, ended}.
-- In the hash (p, q: the session this one replaced): p = 'reason sid created',
-- q = 'expires ended stored retrieved extensions', two values of at most 64 bytes, so that
-- the hash stays a listpack.
local function pack_record(rec)
  return rec[1] .. ' ' .. rec[2] .. ' ' .. rec[3], table.concat({rec[4], rec[8], rec[5], rec[6], rec[7]}, ' ')
end

-- The record kept in p, q, appended to `out`.
local function unpack_record(p, q, out)
  local a, b = {}, {}
  for word in string.gmatch(p, '%S+') do
    a[#a + 1] = word
  end
  for word in string.gmatch(q, '%S+') do
    b[#b + 1] = word
  end
  for _, value in ipairs({a[1], a[2], a[3], b[1], b[3], b[4], b[5], b[2]}) do
    out[#out + 1] = value
  end
  return out
end
