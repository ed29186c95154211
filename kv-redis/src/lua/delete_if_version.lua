-- Deletes a key only if it still holds the entry of version ARGV[2] (see put_if_version.lua),
-- with its index entries. Returns 1 when deleted, else 0.
-- KEYS: index, expiry index, value key. ARGV: name, version.
local idx, exq, vk = KEYS[1], KEYS[2], KEYS[3]
local name, version = ARGV[1], ARGV[2]
local cur = redis.call('GET', vk)
if not cur or redis.sha1hex(cur) .. ':' .. string.format('%d', redis.call('PEXPIRETIME', vk)) ~= version then
  return 0
end
redis.call('DEL', vk)
redis.call('ZREM', idx, name)
redis.call('ZREM', exq, name)
return 1
