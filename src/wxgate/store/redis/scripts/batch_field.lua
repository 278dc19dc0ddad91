-- ARGV[5] batch id, [6] field ('total' | 'rate'), [7] value ('' = none). The batch hash's
-- fields override its doc; `rate` also keeps P:batch_rates (what dispatchers poll) in step and
-- makes the batch's waiting retries due now (one pass over the batch: an operator's action).
local bid, field, value = ARGV[5], ARGV[6], ARGV[7]
local bk = bkey(bid)
local cur = redis.call('HGET', bk, 'status')
if not cur then return 0 end
redis.call('HSET', bk, field, value)
if field == 'rate' then
  if value == '' or cur == 'cancelled' then
    redis.call('HDEL', P .. ':batch_rates', bid)
  else
    redis.call('HSET', P .. ':batch_rates', bid, value)
  end
  -- Messages the old rate held back wait for later turns: due now, so the new rate decides.
  for _, id in ipairs(redis.call('ZRANGE', bk .. ':ids', 0, -1)) do
    local m = load(id)
    if m and (m.status == 'retrying' or m.status == 'queued') and tonumber(m.not_before) > NOWN then
      redis.call('HSET', m.key, 'not_before', NOW)
      if redis.call('ZSCORE', P .. ':delayed', id) then
        redis.call('ZADD', P .. ':delayed', NOW, id)
      end
    end
  end
end
return 1
