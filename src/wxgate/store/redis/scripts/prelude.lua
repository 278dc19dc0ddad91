-- What every message script starts with (the loader puts it before each one's own text).
-- ARGV[1..4] = the app's key prefix `{prefix:app}` (every key a message script touches is
-- one app's: one hash slot on Cluster), consumer group, now (epoch s as an exact decimal
-- string), and the TTL (s) Redis keeps a finished message as a safety net should `prune` stop
-- running.
-- MESSAGE_FIELDS and DEAD_TIME_WIDTH are defined by the loader from redis/codec.py.
local P, G, NOW, TTL = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local NOWN = tonumber(NOW)
local PENDING = {queued = true, scheduled = true, retrying = true}
-- Batch statuses whose messages wait in the batch's :parked set (models.BATCH_HELD).
local HELD = {loading = true, paused = true, incomplete = true}
local FINAL = {sent = true, delivered = true, blocked = true, failed = true, dead = true,
  cancelled = true, expired = true}
-- The public fields (returned to Python, in this order), then the ones only scripts use.
local FIELDS = {unpack(MESSAGE_FIELDS)}
local NPUBLIC = #FIELDS
for _, f in ipairs({'app', 'batch_id', 'sid', 'idem', 'lease_until', 'created_at', 'cb', 'tr'}) do
  FIELDS[#FIELDS + 1] = f
end
local IX = {}  -- field name -> position in FIELDS
for i, f in ipairs(FIELDS) do IX[f] = i end
local COUNTS = P .. ':counts'
local DEAD_ID_AT = DEAD_TIME_WIDTH + 2  -- dead-letter members are "{time, fixed width}:{id}"

local function mkey(id) return P .. ':msg:' .. id end
local DUE = P .. ':due'
local function skey(app) return DUE end  -- the app's stream (P is the app's)
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

-- Append a due message to its app's stream; returns the entry id, which the caller stores as
-- the message's `sid`. The consumer group is made by the first read (lease.lua), from 0, so
-- no entry added before it is missed.
local function xadd(id, app)
  return redis.call('XADD', skey(app), '*', 'id', id)
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
-- change (an outbox: redis/outbox.py leases and finishes these). Nothing without a `cb`.
-- Values left nil are the message's own; event ids are never reused (P:wh:seq only grows).
local function emit(m, status, errcode, errmsg, msgid)
  local url = m.raw[IX.cb]
  if not url or url == '' then return end
  if status == 'sent' or status == 'delivered' then errcode, errmsg = '', '' end
  local eid = 'evt_' .. m.id .. '_' .. redis.call('INCR', P .. ':wh:seq')
  redis.call('HSET', P .. ':wh:' .. eid, 'message_id', m.id, 'app', m.app, 'status', status,
    'url', url, 'occurred_at', NOW, 'errcode', errcode or m.raw[IX.last_errcode] or '',
    'errmsg', errmsg or m.raw[IX.last_errmsg] or '',
    'wechat_msgid', msgid or m.raw[IX.wechat_msgid] or '', 'batch_id', m.batch, 'attempts', 0,
    'trace', m.raw[IX.tr] or '')
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
