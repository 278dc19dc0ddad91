-- ARGV[1] the app's prefix {prefix:app}, [2] event id, [3] error, [4] now, [5] TTL (s) of the kept event.
local P, eid = ARGV[1], ARGV[2]
if redis.call('ZREM', P .. ':wh:due', eid) == 0 then return 0 end
local key = P .. ':wh:' .. eid
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'last_error', ARGV[3])
redis.call('EXPIRE', key, ARGV[5])
redis.call('ZADD', P .. ':wh:failed', ARGV[4], eid)
return 1
