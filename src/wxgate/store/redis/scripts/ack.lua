-- ARGV[5] msgpack [[id, token, wechat_msgid ('' = none), sent_at], ...]. Returns 1/0 per ack.
-- A receipt that beat the ack (P:receipt:{app}:{msgid}) is applied here if it names the
-- message's openid ('=' .. openid; '' or none: unchecked, or kept before openids were).
local out = {}
for _, a in ipairs(cmsgpack.unpack(ARGV[5])) do
  local id, msgid = a[1], a[3]
  local m = fenced(id, a[2])
  if not m then
    out[#out + 1] = 0
  else
    local to = 'sent'
    local fields = {'sent_at', a[4], 'finished_at', NOW, 'updated_at', NOW}
    if msgid ~= '' then
      fields[#fields + 1] = 'wechat_msgid'; fields[#fields + 1] = msgid
      redis.call('HSET', P .. ':msgid:' .. m.app, msgid, id)
      local rk = P .. ':receipt:' .. m.app .. ':' .. msgid
      local r = redis.call('HMGET', rk, 'status', 'receipt', 'openid')
      local mine = not r[3] or r[3] == '' or r[3] == '=' .. cjson.decode(m.raw[IX.doc]).touser
      if r[1] and mine then
        to = r[1]
        fields[#fields + 1] = 'receipt'; fields[#fields + 1] = r[2]
      end
      if r[1] then redis.call('DEL', rk) end
    end
    fields[#fields + 1] = 'status'; fields[#fields + 1] = to
    redis.call('HSET', m.key, unpack(fields))
    redis.call('HINCRBY', m.key, 'attempts', 1)
    move(m.app, m.batch, 'sending', to)
    finish(m)
    emit(m, to, '', '', msgid)
    out[#out + 1] = to
  end
end
flush()
return out
