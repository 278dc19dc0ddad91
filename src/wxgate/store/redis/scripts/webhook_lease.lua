-- ARGV[1] the app's prefix {prefix:app}, [2] now, [3] lease until, [4] n, [5] failed-before
-- cutoff. Returns {event id, EVENT_FIELDS values...} per leased event, oldest due first. EVENT_FIELDS and
-- PRUNE_CHUNK are defined by the loader (redis/outbox.py).
local P, NOW, LU, N = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local due, failed = P .. ':wh:due', P .. ':wh:failed'
local expired = redis.call('ZRANGEBYSCORE', failed, '-inf', ARGV[5], 'LIMIT', 0, PRUNE_CHUNK)
for _, eid in ipairs(expired) do
  redis.call('ZREM', failed, eid)
  redis.call('DEL', P .. ':wh:' .. eid)
end
local out = {}
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', NOW, 'LIMIT', 0, N)) do
  local f = redis.call('HMGET', P .. ':wh:' .. eid, unpack(EVENT_FIELDS))
  if f[1] then
    redis.call('ZADD', due, LU, eid)
    table.insert(f, 1, eid)
    out[#out + 1] = f
  else
    redis.call('ZREM', due, eid)
  end
end
return out
