-- KEYS[1] P:choice:{app} (hash "openid:template" -> "at|rejected"), KEYS[2]
-- P:suppressed:{app} (set of the rejected "openid:template"); ARGV field, at, rejected (1/0).
-- A choice older than the stored one changes nothing: 0.
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local at = tonumber(string.match(old, '^([^|]+)'))
  if at > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
if ARGV[3] == '1' then
  redis.call('SADD', KEYS[2], ARGV[1])
else
  redis.call('SREM', KEYS[2], ARGV[1])
end
return 1
