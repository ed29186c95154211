-- Deletes n keys with their metadata and index entries.
-- KEYS: index, expiry index, then value key and metadata key of each item.
-- ARGV: n, then the name of each item.
local idx, exq = KEYS[1], KEYS[2]
local n = tonumber(ARGV[1])
for j = 0, n - 1 do
  redis.call('DEL', KEYS[3 + 2 * j], KEYS[4 + 2 * j])
  redis.call('ZREM', idx, ARGV[2 + j])
  redis.call('ZREM', exq, ARGV[2 + j])
end
return n
