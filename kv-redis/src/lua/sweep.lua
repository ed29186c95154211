-- Drops from both indexes the keys whose expiry has passed, up to ARGV[2] of them, so that keys
-- that expire without ever being listed do not accumulate in the indexes. Entries whose key now
-- expires later are re-scored, and those of keys made permanent are dropped from the expiry index.
-- KEYS: index, expiry index. ARGV: base, max.
local idx, exq, base = KEYS[1], KEYS[2], ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGE', exq, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[2]))
for _, name in ipairs(due) do
  local at = redis.call('PEXPIRETIME', base .. 'v:' .. name)
  if at == -2 then
    redis.call('ZREM', idx, name)
    redis.call('ZREM', exq, name)
  elseif at == -1 then
    redis.call('ZREM', exq, name)
  else
    redis.call('ZADD', exq, at, name)
  end
end
return #due
