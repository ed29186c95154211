-- The listing fields of some names of one shard's index, which the client has just read from it
-- in order (ZRANGE … BYLEX): each name's expiry and metadata, and for a name whose key has
-- expired or vanished, its removal from both indexes. Metadata is read from the value's frame
-- header with GETRANGE, so large values are never copied.
-- KEYS: index, expiry index, then the value key of each name.
-- ARGV: the frame's magic, then the names, in the order of their value keys.
-- Returns { expiries, metadata }, one of each a name: the expiry in unix ms (-1 for none, -2 for a
-- name dropped from the indexes) and the metadata JSON ('' for none).
local idx, exq, magic = KEYS[1], KEYS[2], ARGV[1]
local exps, metas = {}, {}
for i = 2, #ARGV do
  local name, vk = ARGV[i], KEYS[i + 1]
  local at = redis.call('PEXPIRETIME', vk)
  local meta = ''
  if at == -2 then
    redis.call('ZREM', idx, name)
    redis.call('ZREM', exq, name)
  else
    local head = redis.call('GETRANGE', vk, 0, 7)
    if #head == 8 and string.sub(head, 1, 4) == magic then
      local a, b, c, d = string.byte(head, 5, 8)
      local len = ((a * 256 + b) * 256 + c) * 256 + d
      if len > 0 then
        meta = redis.call('GETRANGE', vk, 8, 7 + len)
      end
    end
  end
  exps[i - 1] = at
  metas[i - 1] = meta
end
return { exps, metas }
