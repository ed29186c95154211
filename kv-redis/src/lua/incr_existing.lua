-- The common case of a counter: adds a delta to a counter that exists, which is already indexed
-- and keeps its expiry. An absent (or expired) key is left absent and false (nil) is returned,
-- so that incr.lua creates it. Returns the new value as incr.lua does. Runs as a Redis function
-- (KEYS and ARGV are then its parameters) or, where functions are refused, as a script.
-- KEYS: value key. ARGV: the delta, left out when it is 1 (Redis charges for every argument).
local vk = KEYS[1]
if redis.call('EXISTS', vk) == 0 then
  return false
end
local n
if ARGV[1] then
  n = redis.call('INCRBY', vk, ARGV[1])
else
  n = redis.call('INCR', vk)
end
if n > -9007199254740992 and n < 9007199254740992 then
  return n
end
return redis.call('GET', vk)
