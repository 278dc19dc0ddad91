-- ARGV[5] batch id, [6] new status, [7] expected current status ('' = any), [8] '1' = cancel
-- without status webhooks (a batch whose POST failed: its ids were never handed out). Returns
-- 1 if the batch exists and took the status. What that means for its messages (leaving a held
-- status puts the parked ones back in P:delayed; `cancelled` cancels every pending one) is
-- batch_work.lua's job, a chunk per call: the batch goes into P:batch_work until it is done.
local bid, to, expect = ARGV[5], ARGV[6], ARGV[7]
local bk = bkey(bid)
local cur = redis.call('HGET', bk, 'status')
if not cur then return 0 end
if cur == 'cancelled' then
  if to == 'cancelled' and (expect == '' or expect == cur) then return 1 end
  return 0
end
if expect ~= '' and cur ~= expect then return 0 end
redis.call('HSET', bk, 'status', to)
if to == 'cancelled' then
  redis.call('HDEL', P .. ':batch_rates', bid)
  redis.call('HSET', bk, 'cancel_after', '')
  if ARGV[8] == '1' then redis.call('HSET', bk, 'cancel_quiet', '1') end
  redis.call('SADD', P .. ':batch_work', bid)
elseif not HELD[to] and redis.call('EXISTS', bk .. ':parked') == 1 then
  redis.call('SADD', P .. ':batch_work', bid)
end
return 1
