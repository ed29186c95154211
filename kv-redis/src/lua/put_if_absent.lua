-- Writes one item only if its key is absent (or expired). Returns 1 when written, else 0.
-- KEYS: index, expiry index, value key, metadata key.
-- ARGV: base, name, value, metadata ('' for none), mode ('0', '1' PX, '2' PXAT), when.
local idx, exq, vk, mk = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, name, val, meta, mode, when = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local ok
if mode == '1' then
  ok = redis.call('SET', vk, val, 'NX', 'PX', when)
elseif mode == '2' then
  ok = redis.call('SET', vk, val, 'NX', 'PXAT', when)
else
  ok = redis.call('SET', vk, val, 'NX')
end
if not ok then
  return 0
end
local at = redis.call('PEXPIRETIME', vk)
if meta ~= '' then
  if at > 0 then
    redis.call('SET', mk, meta, 'PXAT', at)
  else
    redis.call('SET', mk, meta)
  end
else
  redis.call('DEL', mk)
end
redis.call('ZADD', idx, 0, name)
if at > 0 then
  redis.call('ZADD', exq, at, name)
  SWEEP(idx, exq, base, 2)
else
  redis.call('ZREM', exq, name)
end
return 1
