-- KEYS[1] nonce hash; ARGV digest, now, until, ttl_ms. 1 if the nonce is new (or its entry
-- expired by `now`) or is remembered with this digest, else 0.
local f = redis.call('HMGET', KEYS[1], 'digest', 'until')
if f[1] and tonumber(f[2]) > tonumber(ARGV[2]) then
  if f[1] == ARGV[1] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
