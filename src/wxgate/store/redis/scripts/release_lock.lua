-- KEYS[1] lock hash; ARGV[1] owner. Compare-and-delete.
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
