-- Scheduled redrive (MessageQueue.redrive). ARGV[5] app, [6] errcodes as a comma list,
-- [7] cursor member ('' = the oldest), [8] upper bound (a BYLEX bound: deaths at or before
-- died_before), [9] max rounds, [10] most to move, [11] most entries to look at.
-- dead -> queued (attempts reset, last error kept, rounds + 1), oldest death first.
-- Returns {moved, next cursor or ''}.
local app, max_rounds, limit, budget = ARGV[5], tonumber(ARGV[9]), tonumber(ARGV[10]),
  tonumber(ARGV[11])
local codes = {}
for code in string.gmatch(ARGV[6], '[^,]+') do codes[code] = true end
local dk = P .. ':dead'
local low = '-'
if ARGV[7] ~= '' then low = '(' .. ARGV[7] end
local members = redis.call('ZRANGEBYLEX', dk, low, ARGV[8], 'LIMIT', 0, budget)
local moved, last = 0, ''
for _, member in ipairs(members) do
  if moved >= limit then break end
  last = member
  local id = string.sub(member, DEAD_ID_AT)
  local m = load(id)
  if not m then
    redis.call('ZREM', dk, member)
  elseif m.status == 'dead' and m.app == app and codes[m.raw[IX.last_errcode] or '']
      and tonumber(redis.call('HGET', m.key, 'rounds') or '0') < max_rounds then
    redis.call('ZREM', dk, member)
    redis.call('PERSIST', m.key)
    if m.idem ~= '' then redis.call('PERSIST', P .. ':idem:' .. m.app .. ':' .. m.idem) end
    redis.call('HDEL', m.key, 'finished_at', 'dkey')
    redis.call('HINCRBY', m.key, 'rounds', 1)
    redis.call('HSET', m.key, 'status', 'queued', 'attempts', 0, 'not_before', NOW,
      'updated_at', NOW, 'sid', xadd(id, m.app))
    redis.call('ZADD', P .. ':pending', m.created_at, id)
    move(m.app, m.batch, 'dead', 'queued')
    local code = m.raw[IX.last_errcode]
    if m.batch ~= '' and code then bump(bkey(m.batch) .. ':errcodes', code, -1) end
    moved = moved + 1
  end
end
flush()
if moved < limit and #members < budget then return {moved, ''} end
return {moved, last}
