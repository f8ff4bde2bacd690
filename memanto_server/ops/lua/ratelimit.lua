-- Count one request of an owner in its sliding window, unless the window is already full.
--
-- The window is the last `window` microseconds of the Redis server's clock (so every app
-- instance agrees on it). Requests are logged per bucket of `width` microseconds, a fixed
-- fraction of the window, so the hash does not grow with the limit:
--   '<bucket index>' -> '<count>:<time of the bucket's last request>'
--   'n' -> the sum of the counts, 'o' -> the oldest bucket index held.
-- A bucket leaves the window when its *last* request does: no window ever sees more than
-- `limit` requests, and a request is held at most one bucket width longer than `window`.
-- A refused request writes nothing, so a client that keeps trying while refused gets
-- through as soon as its oldest bucket leaves the window.
--
-- KEYS[1]  the owner's hash
-- ARGV     limit, window_us, width_us
-- Returns  {allowed (1 or 0), remaining, reset_us}: reset_us is the time until the oldest
--          bucket leaves the window (0 < reset_us <= window_us), which frees a slot.
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local width = tonumber(ARGV[3])
-- The buckets held always lie within this many indexes of the oldest one.
local span = math.ceil(window / width) + 1

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local current = math.floor(now / width)

local function field(bucket)
  return string.format('%d', bucket)
end

-- A bucket's count and last request time, or nil when it holds nothing.
local function read(bucket)
  local value = redis.call('HGET', key, field(bucket))
  if not value then
    return nil
  end
  local count, last = string.match(value, '^(%d+):(%d+)$')
  return tonumber(count), tonumber(last)
end

local held = redis.call('HMGET', key, 'n', 'o')
local total = tonumber(held[1]) or 0
local oldest = tonumber(held[2])
local oldest_last = nil
if oldest then
  -- Drop the buckets that left the window, oldest first, up to the first one still in it.
  local first = oldest
  oldest = nil
  for bucket = first, first + span do
    local count, last = read(bucket)
    if count then
      if last + window > now then
        oldest, oldest_last = bucket, last
        break
      end
      total = total - count
      redis.call('HDEL', key, field(bucket))
    end
  end
  if not oldest then
    redis.call('DEL', key)  -- all of it left the window
    total = 0
  elseif oldest ~= first then
    redis.call('HSET', key, 'n', total, 'o', oldest)
  end
end

local allowed = 0
if total < limit then
  allowed = 1
  total = total + 1
  local count, last = read(current)
  count = (count or 0) + 1
  last = math.max(last or now, now)
  if not oldest or current <= oldest then
    oldest, oldest_last = current, last  -- a fresh window (or the clock stepped back)
  end
  redis.call('HSET', key, field(current), string.format('%d:%d', count, last), 'n', total, 'o', oldest)
  -- Nothing in the hash counts once this request has left the window.
  redis.call('PEXPIRE', key, math.ceil((last + window - now) / 1000))
end

return {allowed, limit - total, oldest_last + window - now}
