-- KEYS[1] an app's quota counter for a day; ARGV n, ttl_s. One step, so the counter never
-- lives without its TTL (a script, not MULTI: Redis Cluster clients run no transactions).
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total
