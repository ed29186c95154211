-- Compare-and-set keeping the TTL: replaces the value only if it is still exactly ARGV[1].
-- Used for counters that carry metadata (their value is framed, so INCRBY refuses it).
-- KEYS: value key. ARGV: expected, replacement. Returns 1 when swapped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
  return 1
end
return 0
