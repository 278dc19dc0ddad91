-- KEYS[1] token key; ARGV[1] the access_token that failed. Compare-and-delete.
local v = redis.call('GET', KEYS[1])
if not v or cjson.decode(v)['access_token'] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
