-- Writes n items, each replacing value, metadata and expiry, and keeps the indexes.
-- KEYS: index, expiry index, then value key and metadata key of each item.
-- ARGV: base, n, then per item: name, value, metadata ('' for none), mode ('0' none,
--       '1' PX milliseconds, '2' PXAT unix milliseconds), when.
local idx, exq, base = KEYS[1], KEYS[2], ARGV[1]
local n = tonumber(ARGV[2])
local expiring = false
for j = 0, n - 1 do
  local vk, mk = KEYS[3 + 2 * j], KEYS[4 + 2 * j]
  local a = 3 + 5 * j
  local name, val, meta, mode, when = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local existed = redis.call('EXISTS', vk)
  local at = -1
  if mode == '1' then
    redis.call('SET', vk, val, 'PX', when)
    at = redis.call('PEXPIRETIME', vk)
  elseif mode == '2' then
    redis.call('SET', vk, val, 'PXAT', when)
    at = tonumber(when)
  else
    redis.call('SET', vk, val)
  end
  if meta ~= '' then
    if at > 0 then
      redis.call('SET', mk, meta, 'PXAT', at)
    else
      redis.call('SET', mk, meta)
    end
  elseif existed == 1 then
    redis.call('DEL', mk)
  end
  if existed == 0 then
    redis.call('ZADD', idx, 0, name)
  end
  if at > 0 then
    redis.call('ZADD', exq, at, name)
    expiring = true
  elseif existed == 1 then
    redis.call('ZREM', exq, name)
  end
end
if expiring then
  SWEEP(idx, exq, base, 2)
end
return n
