-- ARGV[5] app, [6] msgid, [7] event key, [8] status the receipt means, [9] receipt,
-- [10] event TTL (s), [11] early-receipt TTL (s), [12] '=' .. openid ('' = unchecked): only a
-- message to that openid takes the receipt. Returns the updated message (MESSAGE_FIELDS
-- values), or false when it was a duplicate, kept for the ack, another openid's, or changes
-- nothing.
local app, msgid, to, receipt, openid = ARGV[5], ARGV[6], ARGV[8], ARGV[9], ARGV[12]
local ek = P .. ':event:' .. app .. ':' .. ARGV[7]
if not redis.call('SET', ek, '1', 'NX', 'EX', ARGV[10]) then return false end
local id = redis.call('HGET', P .. ':msgid:' .. app, msgid)
local m = id and load(id)
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
