-- Drops up to max keys whose expiry has passed from the indexes, so that keys that expire
-- without ever being listed do not accumulate there. Every write that sets an expiry sweeps
-- twice as many as it adds, so the expiry index cannot grow with dead keys.
local function SWEEP(idx, exq, base, max)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local due = redis.call('ZRANGE', exq, '-inf', now, 'BYSCORE', 'LIMIT', 0, max)
  for _, name in ipairs(due) do
    if redis.call('EXISTS', base .. 'v:' .. name) == 0 then
      redis.call('ZREM', idx, name)
      redis.call('ZREM', exq, name)
    end
  end
end
