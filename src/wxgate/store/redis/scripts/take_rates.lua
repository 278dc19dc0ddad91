-- KEYS: one bucket hash per take; ARGV: rate, burst, n, now for each in turn. A reserving token
-- bucket (policy.ratelimit's TokenBucket rules) shared by every process; the takes of one call
-- are applied in order, as if made one by one (the callers of one coalesced round trip).
-- Time is the callers' `now` and never moves back: a process whose clock runs ahead only makes
-- the others wait for real time to catch up, so clock skew costs at most one burst of
-- skew * rate, not a lasting error (keep NTP on). Returns each wait as a decimal string (Lua
-- numbers would come back truncated to integers). RATE_TTL_S is defined by the loader.
local out = {}
for i, key in ipairs(KEYS) do
  local b = (i - 1) * 4
  local rate, burst = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  local n, now = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local s = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(s[1]) or burst, tonumber(s[2]) or now
  if now > ts then
    tokens = math.min(burst, tokens + (now - ts) * rate)
    ts = now
  end
  tokens = tokens - n
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts',
    string.format('%.17g', ts))
  redis.call('EXPIRE', key, RATE_TTL_S)
  if tokens >= 0 then out[i] = '0' else out[i] = string.format('%.17g', -tokens / rate) end
end
return out
