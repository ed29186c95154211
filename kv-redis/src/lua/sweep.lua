-- Settles the expiry-index entries of some names whose expiry has passed, which the client has
-- just read from the expiry index (ZRANGE … BYSCORE), so that keys that expire without ever being
-- listed do not accumulate in the indexes: a name whose key has expired or vanished leaves both
-- indexes, one whose key was made permanent leaves the expiry index, and one whose key now
-- expires later is re-scored. Each name's fate depends only on its key as it is now.
-- KEYS: index, expiry index, then the value key of each name.
-- ARGV: the names, in the order of their value keys.
local idx, exq = KEYS[1], KEYS[2]
for i, name in ipairs(ARGV) do
  local at = redis.call('PEXPIRETIME', KEYS[i + 2])
  if at == -2 then
    redis.call('ZREM', idx, name)
    redis.call('ZREM', exq, name)
  elseif at == -1 then
    redis.call('ZREM', exq, name)
  else
    redis.call('ZADD', exq, at, name)
  end
end
