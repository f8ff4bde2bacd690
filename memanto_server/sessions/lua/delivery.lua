-- Delivery ids (prepended to the scripts that change state; store.py).
-- A call whose reply was lost is delivered again (lib/redis_scripts.py) and must not apply
-- twice. Its id, 'PPPPPPnnn', names the pipeline that first carried it and its position
-- there. The hash's field k keeps, per pipeline, the highest position that ran here, and
-- marks 'PPPPPPmmm' (mmm = position + 500) of calls taken back; only the newest 7 entries
-- of 9 characters, so that k stays one small listpack value.
-- Returns whether `id` ran here, whether it was taken back, and k with `id` noted: as run
-- (replacing its pipeline's earlier entry), or with `mark` as taken back.
local function delivery(ring, id, mark)
  ring = ring or ''
  local pipeline, position = string.sub(id, 1, 6), tonumber(string.sub(id, 7))
  local ran, taken, own = false, false, nil
  local at = string.find(ring, pipeline, 1, true)
  while at do
    if (at - 1) % 9 == 0 then
      local n = tonumber(string.sub(ring, at + 6, at + 8))
      if n == position + 500 then
        taken = true
      elseif n < 500 then
        own, ran = at, n >= position
      end
    end
    at = string.find(ring, pipeline, at + 1, true)
  end
  local entry = id
  if mark then
    entry = pipeline .. (position + 500)
  elseif own then
    ring = string.sub(ring, 1, own - 1) .. string.sub(ring, own + 9)
  end
  ring = ring .. entry
  if #ring > 63 then
    ring = string.sub(ring, -63)
  end
  return ran, taken, ring
end
