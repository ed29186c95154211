-- Writes one (framed) value only if its key is absent or expired. Returns 1 when written, else 0.
-- KEYS: index, expiry index, value key.
-- ARGV: name, value, mode ('0' none, '1' PX milliseconds, '2' PXAT unix milliseconds), when.
local idx, exq, vk = KEYS[1], KEYS[2], KEYS[3]
local name, val, mode, when = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
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
redis.call('ZADD', idx, 0, name)
if mode ~= '0' then
  redis.call('ZADD', exq, redis.call('PEXPIRETIME', vk), name)
end
return 1
