-- Adds a delta to a counter; a counter created by this call gets the expiry and enters the
-- indexes. Returns the new value: as an integer while it fits a Lua number (a double) exactly,
-- else as its decimal string read back with GET.
-- KEYS: index, expiry index, value key.
-- ARGV: name, delta, mode ('0', '1' PEXPIRE, '2' PEXPIREAT), when.
local idx, exq, vk = KEYS[1], KEYS[2], KEYS[3]
local name, delta, mode, when = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local existed = redis.call('EXISTS', vk)
local n = redis.call('INCRBY', vk, delta)
if existed == 0 then
  if mode == '1' then
    redis.call('PEXPIRE', vk, when)
  elseif mode == '2' then
    redis.call('PEXPIREAT', vk, when)
  end
  redis.call('ZADD', idx, 0, name)
  if mode ~= '0' then
    redis.call('ZADD', exq, redis.call('PEXPIRETIME', vk), name)
  end
end
if n > -9007199254740992 and n < 9007199254740992 then
  return n
end
return redis.call('GET', vk)
