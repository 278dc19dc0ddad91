-- ARGV[5] batch id, [6] limit. One chunk of what the batch's status asks of its messages:
-- running again, up to `limit` parked messages back to P:delayed; cancelled, up to `limit` of
-- its ids (in order, from the `cancel_after` cursor) looked at and the pending ones cancelled
-- (in-flight ones may finish; a retry of one is cancelled when read). Returns how many it
-- handled; fewer than `limit` means done, and the batch leaves P:batch_work. A batch held again
-- meanwhile leaves it too: the next status change that releases it puts it back.
local bid, limit = ARGV[5], tonumber(ARGV[6])
local bk, wk = bkey(bid), P .. ':batch_work'
local cur = redis.call('HGET', bk, 'status')
local n = 0
if cur == 'cancelled' then
  local after = redis.call('HGET', bk, 'cancel_after')
  local quiet = redis.call('HGET', bk, 'cancel_quiet') == '1'
  if after then
    local lo = after == '' and '-' or ('(' .. after)
    local ids = redis.call('ZRANGEBYLEX', bk .. ':ids', lo, '+', 'LIMIT', 0, limit)
    for _, id in ipairs(ids) do
      local m = load(id)
      if m and PENDING[m.status] then set_final(m, 'cancelled', quiet) end
    end
    n = #ids
    if n == limit then
      redis.call('HSET', bk, 'cancel_after', ids[n])
    else
      redis.call('HDEL', bk, 'cancel_after', 'cancel_quiet')
      redis.call('DEL', bk .. ':parked')
    end
  end
elseif cur and not HELD[cur] then
  local ids = redis.call('SPOP', bk .. ':parked', limit)
  for _, id in ipairs(ids) do
    local nb = redis.call('HGET', mkey(id), 'not_before')
    if nb then redis.call('ZADD', P .. ':delayed', nb, id) end
  end
  n = #ids
end
if n < limit then redis.call('SREM', wk, bid) end
flush()
return n
