-- The common case of a counter: adds a delta to a counter that exists, which is already indexed
-- and keeps its expiry. An absent (or expired) key is left absent and false (nil) is returned,
-- so that incr.lua creates it. Returns the new value as incr.lua does.
-- KEYS: value key. ARGV: delta.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return false
end
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n > -9007199254740992 and n < 9007199254740992 then
  return n
end
return redis.call('GET', KEYS[1])
