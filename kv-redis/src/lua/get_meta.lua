-- Reads a value with its metadata and expiry (unix ms, or -1 for none), or nil when absent.
-- KEYS: value key, metadata key.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
return { v, redis.call('GET', KEYS[2]) or '', redis.call('PEXPIRETIME', KEYS[1]) }
