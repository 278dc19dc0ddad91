-- KEYS[1] lock hash; ARGV owner, now, until, ttl_ms. The owner may take its own lock again.
local f = redis.call('HMGET', KEYS[1], 'owner', 'until')
if f[1] and f[1] ~= ARGV[1] and tonumber(f[2]) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
