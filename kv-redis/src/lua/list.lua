-- One page of the lexicographic index of one shard, skipping (and dropping) entries whose key
-- has expired or vanished.
-- KEYS: index, expiry index.
-- ARGV: base, prefix, start (a BYLEX bound: '-', '[prefix' or '(after'), limit, scan cap.
-- Returns { names, expiries (unix ms or -1), metadata ('' for none), more (0/1), last scanned }.
local idx, exq = KEYS[1], KEYS[2]
local base, prefix, start = ARGV[1], ARGV[2], ARGV[3]
local limit, cap = tonumber(ARGV[4]), tonumber(ARGV[5])
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
    local at = redis.call('PEXPIRETIME', base .. 'v:' .. m)
    if at == -2 then
      redis.call('ZREM', idx, m)
      redis.call('ZREM', exq, m)
    else
      names[#names + 1] = m
      exps[#exps + 1] = at
      metas[#metas + 1] = redis.call('GET', base .. 'm:' .. m) or ''
    end
  end
  if #members < batch then
    done = true
  elseif not done then
    start = '(' .. last
  end
end
return { names, exps, metas, more, last }
