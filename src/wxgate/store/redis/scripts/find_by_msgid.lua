-- Read-only. KEYS[1] msgid hash; ARGV[1] message key prefix, [2] msgid.
local id = redis.call('HGET', KEYS[1], ARGV[2])
if not id then return false end
return redis.call('HMGET', ARGV[1] .. id, unpack(MESSAGE_FIELDS))
