-- Replaces one (framed) value only if its key still holds the entry of version ARGV[5]: the
-- SHA-1 of the stored bytes, ':', and their PEXPIRETIME, as get_with_metadata computes it.
-- Returns 1 when written, else 0 (absent, expired or changed).
-- KEYS: index, expiry index, value key.
-- ARGV: name, value, mode ('0' none, '1' PX milliseconds, '2' PXAT unix milliseconds), when,
-- version.
local idx, exq, vk = KEYS[1], KEYS[2], KEYS[3]
local name, val, mode, when, version = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cur = redis.call('GET', vk)
if not cur or redis.sha1hex(cur) .. ':' .. string.format('%d', redis.call('PEXPIRETIME', vk)) ~= version then
  return 0
end
if mode == '1' then
  redis.call('SET', vk, val, 'PX', when)
elseif mode == '2' then
  redis.call('SET', vk, val, 'PXAT', when)
else
  redis.call('SET', vk, val)
end
redis.call('ZADD', idx, 0, name)
if mode ~= '0' then
  redis.call('ZADD', exq, redis.call('PEXPIRETIME', vk), name)
end
return 1
