-- KEYS[1] pauses hash (app -> AppPause JSON); ARGV app, pause JSON, manual (1|0), now.
-- An automatic pause (manual 0) never replaces a hand-made one (`by` set) still in force.
if ARGV[3] == '0' then
  local old = redis.call('HGET', KEYS[1], ARGV[1])
  if old then
    local p = cjson.decode(old)
    if type(p.by) == 'string' and tonumber(p['until']) > tonumber(ARGV[4]) then return 0 end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
