-- ARGV[5] cutoff (finished at or before it are dropped), [6] limit. Returns {how many list
-- entries were consumed, {ids of the batches dropped}}: their registry entries are the
-- deployment's keys, which Python removes. Counts, indexes and the idempotency key leave with the message, so
-- stats stay exact. An entry whose message finished again later (requeued) is just consumed.
local cutoff, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local dk = P .. ':done'
local n, gone_batches = 0, {}
while n < limit do
  local head = redis.call('LINDEX', dk, 0)
  if not head then break end
  local sep = string.find(head, '|', 1, true)
  local at, id = string.sub(head, 1, sep - 1), string.sub(head, sep + 1)
  if tonumber(at) > cutoff then break end
  redis.call('LPOP', dk)
  n = n + 1
  local m = load(id)
  if m and FINAL[m.status] and m.raw[IX.finished_at] == at then
    count(m.app, m.batch, m.status, -1)
    bump(P .. ':pruned', 'a:' .. m.app .. ':' .. m.status, 1)  -- counts + pruned never shrink
    if m.idem ~= '' then
      local ik = P .. ':idem:' .. m.app .. ':' .. m.idem
      if redis.call('GET', ik) == id then redis.call('DEL', ik) end
    end
    local msgid = m.raw[IX.wechat_msgid]
    if msgid then
      local hk = P .. ':msgid:' .. m.app
      if redis.call('HGET', hk, msgid) == id then redis.call('HDEL', hk, msgid) end
    end
    local extra = redis.call('HMGET', m.key, 'dkey', 'ckey', 'to')
    if extra[1] then redis.call('ZREM', P .. ':dead', extra[1]) end
    if extra[2] then  -- the search indexes (redis/find.py)
      redis.call('ZREM', P .. ':created', extra[2])
      redis.call('ZREM', P .. ':to:' .. extra[3], extra[2])
    end
    if m.batch ~= '' then
      local bk = bkey(m.batch)
      if m.status == 'dead' and m.raw[IX.last_errcode] then
        bump(bk .. ':errcodes', m.raw[IX.last_errcode], -1)
      end
      redis.call('ZREM', bk .. ':ids', id)
      if redis.call('ZCARD', bk .. ':ids') == 0 then
        redis.call('DEL', bk, bk .. ':counts', bk .. ':parked', bk .. ':errcodes')
        gone_batches[#gone_batches + 1] = m.batch
        redis.call('HDEL', P .. ':batch_rates', m.batch)
        TALLY[bk .. ':counts'] = nil  -- flush() must not bring the deleted keys back
        TALLY[bk .. ':errcodes'] = nil
      end
    end
    redis.call('DEL', m.key)
  end
end
flush()
return {n, gone_batches}
