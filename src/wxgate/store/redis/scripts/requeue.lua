-- ARGV[5] mode ('ids' | 'filter'), [6] app, [7] errcode, [8] cursor member, [9] budget,
-- [10..] ids. dead -> queued (attempts reset, last error kept). Returns {moved, next cursor or ''}.
local mode, app, errcode, budget = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[9])
local dk = P .. ':dead'
local moved = 0
local function requeue(id)
  local m = load(id)
  if not m or m.status ~= 'dead' then return end
  if app ~= '' and m.app ~= app then return end
  if errcode ~= '' and m.raw[IX.last_errcode] ~= errcode then return end
  local dkey = redis.call('HGET', m.key, 'dkey')
  if dkey then redis.call('ZREM', dk, dkey) end
  redis.call('PERSIST', m.key)
  if m.idem ~= '' then redis.call('PERSIST', P .. ':idem:' .. m.app .. ':' .. m.idem) end
  redis.call('HDEL', m.key, 'finished_at', 'dkey')
  redis.call('HSET', m.key, 'status', 'queued', 'attempts', 0, 'not_before', NOW,
    'updated_at', NOW, 'sid', xadd(id, m.app))
  redis.call('ZADD', P .. ':pending', m.created_at, id)
  move(m.app, m.batch, 'dead', 'queued')
  local code = m.raw[IX.last_errcode]
  if m.batch ~= '' and code then bump(bkey(m.batch) .. ':errcodes', code, -1) end
  moved = moved + 1
end
if mode == 'ids' then
  for i = 10, #ARGV do requeue(ARGV[i]) end
  flush()
  return {moved, ''}
end
local top = '+'
if ARGV[8] ~= '' then top = '(' .. ARGV[8] end
local members = redis.call('ZREVRANGEBYLEX', dk, top, '-', 'LIMIT', 0, budget)
for _, member in ipairs(members) do
  local id = string.sub(member, DEAD_ID_AT)
  if redis.call('EXISTS', mkey(id)) == 0 then
    redis.call('ZREM', dk, member)
  else
    requeue(id)
  end
end
flush()
if #members < budget then return {moved, ''} end
return {moved, members[#members]}
