-- ARGV[5] app, [6] msgid, [7] event key, [8] status the receipt means, [9] receipt,
-- [10] event TTL (s), [11] early-receipt TTL (s), [12] '=' .. openid ('' = unchecked): only a
-- message to that openid takes the receipt; [13] the message id the receipt was linked to
-- ('' = none; policy/receipt_links.py): it takes the receipt and the msgid only while `sent`
-- without a msgid. Returns the updated message (MESSAGE_FIELDS values), or false when it was
-- a duplicate, kept for the ack, another openid's, or changes nothing.
local app, msgid, to, receipt, openid = ARGV[5], ARGV[6], ARGV[8], ARGV[9], ARGV[12]
local ek = P .. ':event:' .. app .. ':' .. ARGV[7]
if not redis.call('SET', ek, '1', 'NX', 'EX', ARGV[10]) then return false end
local m = nil
if ARGV[13] ~= '' then
  local l = load(ARGV[13])
  local own = l and (l.raw[IX.wechat_msgid] or '') == '' and l.app == app and l.status == 'sent'
  if own and (openid == '' or '=' .. cjson.decode(l.raw[IX.doc]).touser == openid) then
    m = l
    redis.call('HSET', m.key, 'wechat_msgid', msgid)
    redis.call('HSET', P .. ':msgid:' .. app, msgid, m.id)
    m.raw[IX.wechat_msgid] = msgid
  end
end
local id = m and m.id or redis.call('HGET', P .. ':msgid:' .. app, msgid)
m = m or (id and load(id))
if not m then
  local rk = P .. ':receipt:' .. app .. ':' .. msgid
  redis.call('HSET', rk, 'status', to, 'receipt', receipt, 'openid', openid)
  redis.call('EXPIRE', rk, ARGV[11])
  return false
end
if m.status ~= 'sent' then return false end
if openid ~= '' and '=' .. cjson.decode(m.raw[IX.doc]).touser ~= openid then return false end
redis.call('HSET', m.key, 'status', to, 'receipt', receipt, 'updated_at', NOW)
move(m.app, m.batch, 'sent', to)
emit(m, to)
flush()
local out = public(m)
out[IX.status], out[IX.receipt], out[IX.updated_at] = to, receipt, NOW
return out
