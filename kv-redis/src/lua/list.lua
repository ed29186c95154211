-- One page of the lexicographic index of one shard, skipping (and dropping) entries whose key
-- has expired or vanished. Metadata is read from the value's frame header with GETRANGE, so
-- large values are never copied.
-- KEYS: index, expiry index.
-- ARGV: base, prefix, start (a BYLEX bound: '-', '[prefix' or '(after'), limit, scan cap, magic.
-- Returns { names, expiries (unix ms or -1), metadata ('' for none), more (0/1), last scanned }.
local idx, exq = KEYS[1], KEYS[2]
local base, prefix, start = ARGV[1], ARGV[2], ARGV[3]
local limit, cap, magic = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local names, exps, metas = {}, {}, {}
local scanned, last, more = 0, '', 0
local batch = limit + 1
local done = false
while not done do
  local members = redis.call('ZRANGE', idx, start, '+', 'BYLEX', 'LIMIT', 0, batch)
  for _, m in ipairs(members) do
    if string.sub(m, 1, #prefix) ~= prefix then
      done = true
      break
    end
    if #names == limit or scanned >= cap then
      more = 1
      done = true
      break
    end
    scanned = scanned + 1
    last = m
    local vk = base .. 'v:' .. m
    local at = redis.call('PEXPIRETIME', vk)
    if at == -2 then
      redis.call('ZREM', idx, m)
      redis.call('ZREM', exq, m)
    else
      local meta = ''
      local head = redis.call('GETRANGE', vk, 0, 7)
      if #head == 8 and string.sub(head, 1, 4) == magic then
        local a, b, c, d = string.byte(head, 5, 8)
        local len = ((a * 256 + b) * 256 + c) * 256 + d
        if len > 0 then
          meta = redis.call('GETRANGE', vk, 8, 7 + len)
        end
      end
      names[#names + 1] = m
      exps[#exps + 1] = at
      metas[#metas + 1] = meta
    end
  end
  if #members < batch then
    done = true
  elseif not done then
    start = '(' .. last
  end
end
return { names, exps, metas, more, last }
