-- Adds a delta to a counter; a counter created by this call gets the expiry. Returns the new
-- value as its decimal string.
-- KEYS: index, expiry index, value key.
-- ARGV: base, name, delta, mode ('0', '1' PEXPIRE, '2' PEXPIREAT), when.
local idx, exq, vk = KEYS[1], KEYS[2], KEYS[3]
local base, name, delta, mode, when = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local existed = redis.call('EXISTS', vk)
redis.call('INCRBY', vk, delta)
if existed == 0 then
  if mode == '1' then
    redis.call('PEXPIRE', vk, when)
  elseif mode == '2' then
    redis.call('PEXPIREAT', vk, when)
  end
  redis.call('ZADD', idx, 0, name)
  local at = redis.call('PEXPIRETIME', vk)
  if at > 0 then
    redis.call('ZADD', exq, at, name)
    SWEEP(idx, exq, base, 2)
  else
    redis.call('ZREM', exq, name)
  end
end
-- Lua numbers are doubles: return the stored decimal string so no i64 loses precision.
return redis.call('GET', vk)
