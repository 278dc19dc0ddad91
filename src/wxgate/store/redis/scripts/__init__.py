"""The Lua scripts of the Redis store: every state change that touches more than one key is one
script, so a crash between two commands can never lose, duplicate or half-move a message.

Scripts name their keys from a prefix (ARGV) rather than KEYS, so they need a standalone or
Sentinel Redis (>= 7.0 for the `#!lua` line), not Redis Cluster. Message scripts share PRELUDE
and take ARGV[1..4] = prefix, consumer group, now (epoch s as an exact decimal string), and the
TTL (s) Redis keeps a finished message as a safety net should `prune` stop running.
Writing scripts start with `#!lua`: Redis then refuses them up front when it is out of memory
instead of failing half-way, which keeps enqueue all-or-nothing.

Cost rules (Redis runs one script at a time, so its time per message caps the whole
deployment): counters are tallied in Lua and written once per script call; acked stream entries
are not deleted one by one but trimmed below the oldest unacked entry once per lease call; the
finished-message index is a list (RPUSH/LPOP), not a sorted set.
"""

from __future__ import annotations

from wxgate.store.redis_codec import DEAD_TIME_WIDTH, MESSAGE_FIELDS

_FIELDS_LUA = ", ".join(f"'{f}'" for f in MESSAGE_FIELDS)

PRELUDE = (
    r"""
local P, G, NOW, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local NOWN = tonumber(NOW)
local PENDING = {queued = true, scheduled = true, retrying = true}
-- Batch statuses whose messages wait in the batch's :parked set (models.BATCH_HELD).
local HELD = {loading = true, paused = true, incomplete = true}
local FINAL = {sent = true, delivered = true, blocked = true, failed = true, dead = true,
  cancelled = true, expired = true}
-- The public fields (returned to Python, in this order), then the ones only scripts use.
local FIELDS = {"""
    + _FIELDS_LUA
    + r"""}
local NPUBLIC = #FIELDS
for _, f in ipairs({'app', 'batch_id', 'sid', 'idem', 'lease_until', 'created_at', 'cb'}) do
  FIELDS[#FIELDS + 1] = f
end
local IX = {}  -- field name -> position in FIELDS
for i, f in ipairs(FIELDS) do IX[f] = i end
local COUNTS = P .. ':counts'
local DEAD_ID_AT = """
    + str(DEAD_TIME_WIDTH + 2)
    + r"""  -- dead-letter members are "{time, fixed width}:{id}"

local function mkey(id) return P .. ':msg:' .. id end
local SKEYS = {}
local function skey(app)
  local k = SKEYS[app]
  if not k then
    k = P .. ':due:' .. app
    SKEYS[app] = k
  end
  return k
end
local function bkey(batch) return P .. ':batch:' .. batch end

-- One HMGET per message: m.raw keeps the values so scripts can patch and return them.
local function load(id)
  local key = mkey(id)
  local f = redis.call('HMGET', key, unpack(FIELDS))
  if not f[IX.status] then return nil end
  return {id = id, key = key, raw = f, status = f[IX.status], not_before = f[IX.not_before],
    token = f[IX.lease_token] or '', app = f[IX.app], batch = f[IX.batch_id] or '',
    sid = f[IX.sid] or '', idem = f[IX.idem] or '', lease_until = f[IX.lease_until],
    created_at = f[IX.created_at]}
end
local function public(m)
  local out = {}
  for k = 1, NPUBLIC do out[k] = m.raw[k] end
  return out
end

-- Counters are tallied here and written by flush() once per call.
local TALLY = {}
local AFIELDS = {}
local function bump(key, field, d)
  local t = TALLY[key]
  if not t then
    t = {}
    TALLY[key] = t
  end
  t[field] = (t[field] or 0) + d
end
local function count(app, batch, status, d)
  local af = AFIELDS[app]
  if not af then
    af = {}
    AFIELDS[app] = af
  end
  local f = af[status]
  if not f then
    f = 'a:' .. app .. ':' .. status
    af[status] = f
  end
  bump(COUNTS, 's:' .. status, d)
  bump(COUNTS, f, d)
  if batch ~= '' then bump(bkey(batch) .. ':counts', status, d) end
end
local function move(app, batch, from, to)
  if from ~= to then
    count(app, batch, from, -1)
    count(app, batch, to, 1)
  end
end
local function flush()
  for key, fields in pairs(TALLY) do
    for field, d in pairs(fields) do
      if d ~= 0 then redis.call('HINCRBY', key, field, d) end
    end
  end
  TALLY = {}
end

-- Append a due message to its app's stream (the group is made with the stream, from 0);
-- returns the entry id, which the caller stores as the message's `sid`.
local KNOWN_APPS = {}
local function xadd(id, app)
  local sk = skey(app)
  local sid = redis.call('XADD', sk, '*', 'id', id)
  if not KNOWN_APPS[app] then
    KNOWN_APPS[app] = true
    if redis.call('SADD', P .. ':apps', app) == 1 then
      redis.pcall('XGROUP', 'CREATE', sk, G, '0')
    end
  end
  return sid
end
local function enstream(m)
  redis.call('HSET', m.key, 'sid', xadd(m.id, m.app))
end

-- Out of every index that could hand the message out again. A pending message's unread stream
-- entry stays: the lease script skips entries whose message is no longer due.
local function unindex(m)
  if m.status == 'sending' then
    redis.call('ZREM', P .. ':inflight', m.id)
    if m.sid ~= '' then redis.pcall('XACK', skey(m.app), G, m.sid) end
  else
    redis.call('ZREM', P .. ':delayed', m.id)
    redis.call('ZREM', P .. ':pending', m.id)
    if m.batch ~= '' then redis.call('SREM', bkey(m.batch) .. ':parked', m.id) end
  end
end

-- A final status: prune drops it after retention; the TTL is the safety net if prune stops.
local function finish(m)
  redis.call('RPUSH', P .. ':done', NOW .. '|' .. m.id)
  redis.call('EXPIRE', m.key, TTL)
  if m.idem ~= '' then redis.call('EXPIRE', P .. ':idem:' .. m.app .. ':' .. m.idem, TTL) end
end

-- The status webhook of a message that just became final, written by the same script as the
-- change (an outbox: redis_webhooks.py leases and finishes these). Nothing without a `cb`.
-- Values left nil are the message's own; event ids are never reused (P:wh:seq only grows).
local function emit(m, status, errcode, errmsg, msgid)
  local url = m.raw[IX.cb]
  if not url or url == '' then return end
  if status == 'sent' or status == 'delivered' then errcode, errmsg = '', '' end
  local eid = 'evt_' .. m.id .. '_' .. redis.call('INCR', P .. ':wh:seq')
  redis.call('HSET', P .. ':wh:' .. eid, 'message_id', m.id, 'app', m.app, 'status', status,
    'url', url, 'occurred_at', NOW, 'errcode', errcode or m.raw[IX.last_errcode] or '',
    'errmsg', errmsg or m.raw[IX.last_errmsg] or '',
    'wechat_msgid', msgid or m.raw[IX.wechat_msgid] or '', 'batch_id', m.batch, 'attempts', 0)
  redis.call('ZADD', P .. ':wh:due', NOW, eid)
end

local function set_final(m, status, quiet)
  unindex(m)
  redis.call('HSET', m.key, 'status', status, 'finished_at', NOW, 'updated_at', NOW)
  move(m.app, m.batch, m.status, status)
  finish(m)
  if not quiet then emit(m, status) end
end

-- The message if it is `sending` under `token` (fencing), taken out of its indexes.
local function fenced(id, token)
  local m = load(id)
  if not m or m.status ~= 'sending' or m.token ~= token then return nil end
  unindex(m)
  return m
end
"""
)


def _script(body: str) -> str:
    return "#!lua\n" + PRELUDE + body


# ARGV[5] = number of enqueue calls (groups), then one msgpack argument per group:
# [batch_id, batch_doc, [[id, app, idempotency_key, batch_id, status, not_before, created_at,
# doc, cb, shared], ...], batch_shared]. Returns per group {'ok', id, status, created(0|1), ...}
# or {'err', reason}; a group is checked completely before any of it is written, so each call
# is all-or-nothing.
ENQUEUE = _script(r"""
local out = {}
local held = {}  -- batch id -> its new messages are parked (a held batch)
for g = 1, tonumber(ARGV[5]) do
  local group = cmsgpack.unpack(ARGV[5 + g])
  local bid, bdoc, recs = group[1], group[2], group[3]
  local res, fresh, ids, keys, err = {'ok'}, {}, {}, {}, nil
  if bid ~= '' and redis.call('EXISTS', bkey(bid)) == 1 then err = 'batch exists: ' .. bid end
  for _, r in ipairs(recs) do
    if err then break end
    local id, app, idem, status = r[1], r[2], r[3], r[5]
    if ids[id] or redis.call('EXISTS', mkey(id)) == 1 then
      err = 'message id exists: ' .. id
      break
    end
    local dup = nil
    if idem ~= '' then
      local ik = P .. ':idem:' .. app .. ':' .. idem
      dup = keys[ik]
      if not dup then
        local old = redis.call('GET', ik)
        if old then
          local st = redis.call('HGET', mkey(old), 'status')
          if st then dup = {old, st} end
        end
      end
      if not dup then keys[ik] = {id, status} end
    end
    if dup then
      res[#res + 1] = dup[1]; res[#res + 1] = dup[2]; res[#res + 1] = 0
    else
      ids[id] = true
      fresh[#fresh + 1] = r
      res[#res + 1] = id; res[#res + 1] = status; res[#res + 1] = 1
    end
  end
  if err then
    out[g] = {'err', err}
  else
    local bstatus = ''
    if bid ~= '' then
      bstatus = cjson.decode(bdoc).status or 'running'
      held[bid] = HELD[bstatus] or false
    end
    for _, r in ipairs(fresh) do
      local id, app, idem, mbid, status, nb, created = r[1], r[2], r[3], r[4], r[5], r[6], r[7]
      local sid = ''
      if mbid ~= '' and held[mbid] == nil then
        held[mbid] = HELD[redis.call('HGET', bkey(mbid), 'status') or 'running'] or false
      end
      if mbid ~= '' and held[mbid] then
        -- A chunk of a streamed upload: parked until the batch runs (BATCH_STATUS).
        redis.call('SADD', bkey(mbid) .. ':parked', id)
      elseif status == 'scheduled' then
        redis.call('ZADD', P .. ':delayed', nb, id)
      else
        sid = xadd(id, app)
      end
      redis.call('HSET', mkey(id), 'doc', r[8], 'app', app, 'batch_id', mbid,
        'idem', idem, 'status', status, 'not_before', nb, 'created_at', created,
        'attempts', 0, 'lease_token', 0, 'sid', sid, 'cb', r[9] or '', 'shared', r[10] or '')
      redis.call('ZADD', P .. ':pending', created, id)
      if idem ~= '' then redis.call('SET', P .. ':idem:' .. app .. ':' .. idem, id) end
      if mbid ~= '' then redis.call('ZADD', bkey(mbid) .. ':ids', 0, id) end
      count(app, mbid, status, 1)
    end
    if bid ~= '' then
      redis.call('HSET', bkey(bid), 'doc', bdoc, 'status', bstatus)
      if group[4] and group[4] ~= '' then redis.call('HSET', bkey(bid), 'shared', group[4]) end
      local rate = cjson.decode(bdoc).rate_per_s
      if type(rate) == 'number' then
        redis.call('HSET', P .. ':batch_rates', bid, string.format('%.17g', rate))
      end
      -- %.17g: a bare Lua number would reach Redis rounded to 14 digits
      local created = string.format('%.17g', cjson.decode(bdoc).created_at)
      redis.call('ZADD', P .. ':batches', created, bid)
    end
    out[g] = res
  end
end
flush()
return out
""")

# ARGV[5] consumer, [6] n, [7] lease_until, [8] promote cap, [9] max entries read, [10..] excluded
# apps. Returns the leased messages (MESSAGE_FIELDS values each).
#
# 1. Due scheduled/retrying messages move from P:delayed to their app's stream.
# 2. Expired leases (lease_until <= now) move to the tail of their app's stream, still
#    `sending` under the old token until someone leases them (the old holder may still ack).
# 3. Apps are read round-robin (the start rotates per call) in equal shares, each app's stream
#    through the consumer group, until n are leased or every app ran dry. Entries of messages
#    that are no longer due are acked and skipped; those of paused batches are parked in the
#    batch's set until it runs again; those of cancelled batches cancel their message.
# 4. Each stream read is trimmed below its oldest unacked entry.
LEASE = _script(r"""
local consumer, n, lu = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local cap, read_cap = tonumber(ARGV[8]), tonumber(ARGV[9])
local excluded = {}
for i = 10, #ARGV do excluded[ARGV[i]] = true end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':delayed', '-inf', NOW, 'LIMIT', 0, cap)) do
  redis.call('ZREM', P .. ':delayed', id)
  local m = load(id)
  -- `sending`: an expired lease parked while its batch was held, back after the resume.
  if m and (PENDING[m.status] or m.status == 'sending') then enstream(m) end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. ':inflight', '-inf', NOW, 'LIMIT', 0, cap)) do
  redis.call('ZREM', P .. ':inflight', id)
  local m = load(id)
  if m and m.status == 'sending' then
    if m.sid ~= '' then redis.pcall('XACK', skey(m.app), G, m.sid) end
    enstream(m)
  end
end

local token = redis.call('INCRBY', P .. ':seq', n) - n
local batch_status = {}

local function take(app, eid, id)
  local m = load(id)
  if not m or m.sid ~= eid then return nil end
  local due = PENDING[m.status] or (m.status == 'sending' and tonumber(m.lease_until) <= NOWN)
  if not due then return nil end
  if m.batch ~= '' then
    local bst = batch_status[m.batch]
    if not bst then
      bst = redis.call('HGET', bkey(m.batch), 'status') or 'running'
      batch_status[m.batch] = bst
    end
    if HELD[bst] then
      redis.call('HSET', m.key, 'sid', '')
      redis.call('SADD', bkey(m.batch) .. ':parked', id)
      return nil
    elseif bst == 'cancelled' then
      m.sid = ''  -- the caller acks the entry
      set_final(m, 'cancelled')
      return nil
    end
  end
  if tonumber(m.not_before) > NOWN then
    redis.call('HSET', m.key, 'sid', '')
    redis.call('ZADD', P .. ':delayed', m.not_before, id)
    return nil
  end
  if m.status == 'sending' then bump(COUNTS, 'e:' .. m.app, 1) end  -- an expired lease
  token = token + 1
  redis.call('HSET', m.key, 'status', 'sending', 'lease_token', token, 'lease_until', lu,
    'updated_at', NOW)
  redis.call('ZADD', P .. ':inflight', lu, id)
  if m.status ~= 'sending' then redis.call('ZREM', P .. ':pending', id) end
  move(m.app, m.batch, m.status, 'sending')
  local out = public(m)
  out[IX.status], out[IX.lease_token], out[IX.updated_at] = 'sending', token, NOW
  return out
end

local function readgroup(sk, want)
  local r = redis.pcall('XREADGROUP', 'GROUP', G, consumer, 'COUNT', want, 'STREAMS', sk, '>')
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'NOGROUP', 1, true) then error(r.err) end
    redis.pcall('XGROUP', 'CREATE', sk, G, '0', 'MKSTREAM')
    r = redis.call('XREADGROUP', 'GROUP', G, consumer, 'COUNT', want, 'STREAMS', sk, '>')
  end
  if not r then return {} end
  return r[1][2]
end

-- Everything below the oldest unacked entry was delivered and acked: drop it.
local function trim(sk, last_read)
  local pel = redis.call('XPENDING', sk, G)
  local floor = pel[2] or last_read
  if floor then redis.call('XTRIM', sk, 'MINID', '~', floor) end
end

local apps = redis.call('SMEMBERS', P .. ':apps')
table.sort(apps)
local active = {}
for _, app in ipairs(apps) do
  if not excluded[app] then active[#active + 1] = app end
end
local out, remaining, reads, last_read = {}, n, 0, {}
local turn = redis.call('INCR', P .. ':rr')
while remaining > 0 and #active > 0 and reads < read_cap do
  local share = math.ceil(remaining / #active)
  local still = {}
  for k = 0, #active - 1 do
    local app = active[((turn + k) % #active) + 1]
    local want = math.min(share, remaining)
    if want > 0 and reads < read_cap then
      local sk = skey(app)
      local entries = readgroup(sk, want)
      reads = reads + #entries
      local skipped = {}
      for _, e in ipairs(entries) do
        local leased = take(app, e[1], e[2][2])
        if leased then
          out[#out + 1] = leased
          remaining = remaining - 1
        else
          skipped[#skipped + 1] = e[1]
        end
      end
      for i = 1, #skipped, 500 do  -- unpack() has a stack limit
        redis.call('XACK', sk, G, unpack(skipped, i, math.min(i + 499, #skipped)))
      end
      if #entries > 0 then last_read[sk] = entries[#entries][1] end
      if #entries == want then still[#still + 1] = app end
    elseif want == 0 then
      still[#still + 1] = app
    end
  end
  active = still
end
for sk, last in pairs(last_read) do trim(sk, last) end
flush()
return out
""")

# ARGV[5] msgpack [[id, token, wechat_msgid ('' = none), sent_at], ...]. Returns 1/0 per ack.
# A receipt that beat the ack (P:receipt:{app}:{msgid}) is applied here if it names the
# message's openid ('=' .. openid; '' or none: unchecked, or kept before openids were).
ACK = _script(r"""
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
""")

# ARGV[5] id, [6] token, [7] at, [8] count attempt (1|0), [9] errcode ('' = keep the last
# error), [10] errmsg. Back to P:delayed as `retrying`; the next lease at or after `at` takes it.
RETRY = _script(r"""
local id, at = ARGV[5], ARGV[7]
local m = fenced(id, ARGV[6])
if not m then return 0 end
redis.call('HSET', m.key, 'status', 'retrying', 'not_before', at, 'updated_at', NOW)
if ARGV[8] == '1' then redis.call('HINCRBY', m.key, 'attempts', 1) end
if ARGV[9] ~= '' then
  redis.call('HSET', m.key, 'last_errcode', ARGV[9], 'last_errmsg', ARGV[10])
end
redis.call('ZADD', P .. ':delayed', at, id)
redis.call('ZADD', P .. ':pending', m.created_at, id)
move(m.app, m.batch, 'sending', 'retrying')
flush()
return 1
""")

# ARGV[5] id, [6] token, [7] errcode, [8] errmsg, [9] dead-letter member.
DEAD = _script(r"""
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
""")

# ARGV[5] id, [6] token.
EXPIRE = _script(r"""
local id = ARGV[5]
local m = load(id)
if not m or m.status ~= 'sending' or m.token ~= ARGV[6] then return 0 end
set_final(m, 'expired')
flush()
return 1
""")

# ARGV[5] id. Returns a CancelOutcome value.
CANCEL = _script(r"""
local id = ARGV[5]
local m = load(id)
if not m then return 'not_found' end
if not PENDING[m.status] then return 'conflict' end
set_final(m, 'cancelled')
flush()
return 'cancelled'
""")

# ARGV[5] app, [6] msgid, [7] event key, [8] status the receipt means, [9] receipt,
# [10] event TTL (s), [11] early-receipt TTL (s), [12] '=' .. openid ('' = unchecked): only a
# message to that openid takes the receipt. Returns the updated message (MESSAGE_FIELDS
# values), or false when it was a duplicate, kept for the ack, another openid's, or changes
# nothing.
RECEIPT = _script(r"""
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
""")

# ARGV[5] app ('' = any), [6] errcode ('' = any), [7] cursor member ('' = newest),
# [8] limit, [9] most entries to look at. Returns {next cursor or '', message...}. Looks one
# match past the page so the last page says so (cursor '').
DEAD_LETTERS = _script(r"""
local app, errcode, cursor, limit, budget = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8]),
  tonumber(ARGV[9])
local dk = P .. ':dead'
local top = '+'
if cursor ~= '' then top = '(' .. cursor end
local page, last, more = {''}, '', false
while budget > 0 and not more do
  local members = redis.call('ZREVRANGEBYLEX', dk, top, '-', 'LIMIT', 0, math.min(200, budget))
  if #members == 0 then break end
  budget = budget - #members
  for _, member in ipairs(members) do
    top = '(' .. member
    local id = string.sub(member, DEAD_ID_AT)
    local m = load(id)
    if not m or m.status ~= 'dead' then
      redis.call('ZREM', dk, member)
    elseif (app == '' or m.app == app) and (errcode == '' or m.raw[IX.last_errcode] == errcode) then
      if #page > limit then
        more = true
        break
      end
      page[#page + 1] = public(m)
      last = member
    end
  end
end
if budget <= 0 and not more then
  more = true
  last = string.sub(top, 2)
end
if more then page[1] = last end
return page
""")

# ARGV[5] mode ('ids' | 'filter'), [6] app, [7] errcode, [8] cursor member, [9] budget,
# [10..] ids. dead -> queued (attempts reset, last error kept). Returns {moved, next cursor or ''}.
REQUEUE = _script(r"""
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
""")

# ARGV[5] batch id, [6] new status, [7] expected current status ('' = any), [8] '1' = cancel
# without status webhooks (a batch whose POST failed: its ids were never handed out). Returns
# 1 if the batch exists and took the status. What that means for its messages (leaving a held status
# puts the parked ones back in P:delayed; `cancelled` cancels every pending one) is BATCH_WORK's
# job, a chunk per call: the batch goes into P:batch_work until it is done.
BATCH_STATUS = _script(r"""
local bid, to, expect = ARGV[5], ARGV[6], ARGV[7]
local bk = bkey(bid)
local cur = redis.call('HGET', bk, 'status')
if not cur then return 0 end
if cur == 'cancelled' then
  if to == 'cancelled' and (expect == '' or expect == cur) then return 1 end
  return 0
end
if expect ~= '' and cur ~= expect then return 0 end
redis.call('HSET', bk, 'status', to)
if to == 'cancelled' then
  redis.call('HDEL', P .. ':batch_rates', bid)
  redis.call('HSET', bk, 'cancel_after', '')
  if ARGV[8] == '1' then redis.call('HSET', bk, 'cancel_quiet', '1') end
  redis.call('SADD', P .. ':batch_work', bid)
elseif not HELD[to] and redis.call('EXISTS', bk .. ':parked') == 1 then
  redis.call('SADD', P .. ':batch_work', bid)
end
return 1
""")

# ARGV[5] batch id, [6] limit. One chunk of what the batch's status asks of its messages:
# running again, up to `limit` parked messages back to P:delayed; cancelled, up to `limit` of
# its ids (in order, from the `cancel_after` cursor) looked at and the pending ones cancelled
# (in-flight ones may finish; a retry of one is cancelled when read). Returns how many it
# handled; fewer than `limit` means done, and the batch leaves P:batch_work. A batch held again
# meanwhile leaves it too: the next status change that releases it puts it back.
BATCH_WORK = _script(r"""
local bid, limit = ARGV[5], tonumber(ARGV[6])
local bk, wk = bkey(bid), P .. ':batch_work'
local cur = redis.call('HGET', bk, 'status')
local n = 0
if cur == 'cancelled' then
  local after = redis.call('HGET', bk, 'cancel_after')
  local quiet = redis.call('HGET', bk, 'cancel_quiet') == '1'
  if after then
    local lo = after == '' and '-' or ('(' .. after)
    local ids = redis.call('ZRANGEBYLEX', bk .. ':ids', lo, '+', 'LIMIT', 0, limit)
    for _, id in ipairs(ids) do
      local m = load(id)
      if m and PENDING[m.status] then set_final(m, 'cancelled', quiet) end
    end
    n = #ids
    if n == limit then
      redis.call('HSET', bk, 'cancel_after', ids[n])
    else
      redis.call('HDEL', bk, 'cancel_after', 'cancel_quiet')
      redis.call('DEL', bk .. ':parked')
    end
  end
elseif cur and not HELD[cur] then
  local ids = redis.call('SPOP', bk .. ':parked', limit)
  for _, id in ipairs(ids) do
    local nb = redis.call('HGET', mkey(id), 'not_before')
    if nb then redis.call('ZADD', P .. ':delayed', nb, id) end
  end
  n = #ids
end
if n < limit then redis.call('SREM', wk, bid) end
flush()
return n
""")

# ARGV[5] cutoff (finished at or before it are dropped), [6] limit. Returns how many list
# entries were consumed. Counts, indexes and the idempotency key leave with the message, so
# stats stay exact. An entry whose message finished again later (requeued) is just consumed.
PRUNE = _script(r"""
local cutoff, limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local dk = P .. ':done'
local n = 0
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
    local dkey = redis.call('HGET', m.key, 'dkey')
    if dkey then redis.call('ZREM', P .. ':dead', dkey) end
    if m.batch ~= '' then
      local bk = bkey(m.batch)
      if m.status == 'dead' and m.raw[IX.last_errcode] then
        bump(bk .. ':errcodes', m.raw[IX.last_errcode], -1)
      end
      redis.call('ZREM', bk .. ':ids', id)
      if redis.call('ZCARD', bk .. ':ids') == 0 then
        redis.call('DEL', bk, bk .. ':counts', bk .. ':parked', bk .. ':errcodes')
        redis.call('ZREM', P .. ':batches', m.batch)
        redis.call('HDEL', P .. ':batch_rates', m.batch)
        TALLY[bk .. ':counts'] = nil  -- flush() must not bring the deleted keys back
        TALLY[bk .. ':errcodes'] = nil
      end
    end
    redis.call('DEL', m.key)
  end
end
flush()
return n
""")

# ARGV[5] batch id, [6] field ('total' | 'rate'), [7] value ('' = none). The batch hash's
# fields override its doc; `rate` also keeps P:batch_rates (what dispatchers poll) in step and
# makes the batch's waiting retries due now (one pass over the batch: an operator's action).
BATCH_FIELD = _script(r"""
local bid, field, value = ARGV[5], ARGV[6], ARGV[7]
local bk = bkey(bid)
local cur = redis.call('HGET', bk, 'status')
if not cur then return 0 end
redis.call('HSET', bk, field, value)
if field == 'rate' then
  if value == '' or cur == 'cancelled' then
    redis.call('HDEL', P .. ':batch_rates', bid)
  else
    redis.call('HSET', P .. ':batch_rates', bid, value)
  end
  -- Messages the old rate held back wait for later turns: due now, so the new rate decides.
  for _, id in ipairs(redis.call('ZRANGE', bk .. ':ids', 0, -1)) do
    local m = load(id)
    if m and m.status == 'retrying' and tonumber(m.not_before) > NOWN then
      redis.call('HSET', m.key, 'not_before', NOW)
      if redis.call('ZSCORE', P .. ':delayed', id) then
        redis.call('ZADD', P .. ':delayed', NOW, id)
      end
    end
  end
end
return 1
""")

# Read-only. KEYS[1] msgid hash; ARGV[1] message key prefix, [2] msgid.
FIND_BY_MSGID = (
    "#!lua flags=no-writes\nlocal FIELDS = {"
    + _FIELDS_LUA
    + r"""}
local id = redis.call('HGET', KEYS[1], ARGV[2])
if not id then return false end
return redis.call('HMGET', ARGV[1] .. id, unpack(FIELDS))
"""
)
