-- ARGV[1] the app's prefix {prefix:app}, [2] event id. 1 if it was pending (now delivered and dropped), else 0.
local P, eid = ARGV[1], ARGV[2]
if redis.call('ZREM', P .. ':wh:due', eid) == 0 then return 0 end
redis.call('DEL', P .. ':wh:' .. eid)
redis.call('HINCRBY', P .. ':wh:counts', 'delivered', 1)
return 1
