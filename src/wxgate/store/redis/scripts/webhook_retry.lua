-- ARGV[1] the app's prefix {prefix:app}, [2] event id, [3] due again at, [4] error.
local P, eid = ARGV[1], ARGV[2]
if not redis.call('ZSCORE', P .. ':wh:due', eid) then return 0 end
local key = P .. ':wh:' .. eid
redis.call('HINCRBY', key, 'attempts', 1)
redis.call('HSET', key, 'last_error', ARGV[4])
redis.call('ZADD', P .. ':wh:due', ARGV[3], eid)
return 1
