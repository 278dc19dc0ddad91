-- ARGV[5] id, [6] token, [7] errcode, [8] errmsg, [9] dead-letter member.
local id = ARGV[5]
local m = fenced(id, ARGV[6])
if not m then return 0 end
redis.call('HSET', m.key, 'status', 'dead', 'last_errcode', ARGV[7], 'last_errmsg', ARGV[8],
  'finished_at', NOW, 'updated_at', NOW, 'dkey', ARGV[9])
redis.call('HINCRBY', m.key, 'attempts', 1)
redis.call('ZADD', P .. ':dead', 0, ARGV[9])
move(m.app, m.batch, 'sending', 'dead')
if m.batch ~= '' then bump(bkey(m.batch) .. ':errcodes', ARGV[7], 1) end
finish(m)
emit(m, 'dead', ARGV[7], ARGV[8])
flush()
return 1
