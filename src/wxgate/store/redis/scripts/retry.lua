-- ARGV[5] id, [6] token, [7] at, [8] count attempt (1|0), [9] errcode ('' = keep the last
-- error), [10] errmsg. Back to P:delayed as `retrying`, or as `queued` for a release (no
-- attempt, no error: store/base.py); the next lease at or after `at` takes it.
local id, at = ARGV[5], ARGV[7]
local m = fenced(id, ARGV[6])
if not m then return 0 end
local st = 'retrying'
if ARGV[8] == '0' and ARGV[9] == '' then st = 'queued' end
redis.call('HSET', m.key, 'status', st, 'not_before', at, 'updated_at', NOW)
if ARGV[8] == '1' then redis.call('HINCRBY', m.key, 'attempts', 1) end
if ARGV[9] ~= '' then
  redis.call('HSET', m.key, 'last_errcode', ARGV[9], 'last_errmsg', ARGV[10])
end
redis.call('ZADD', P .. ':delayed', at, id)
redis.call('ZADD', P .. ':pending', m.created_at, id)
move(m.app, m.batch, 'sending', st)
flush()
return 1
