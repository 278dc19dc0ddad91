-- One app's enqueues (the registry of batches, P:batches and P:batch_app, is the
-- deployment's: redis/queue.py writes it first). ARGV[5] = number of enqueue calls (groups),
-- then one msgpack argument per group:
-- [batch_id, batch_doc, [[id, app, idempotency_key, batch_id, status, not_before, created_at,
-- doc, cb, shared, ckey, touser, idem_digest, tr], ...], batch_shared] (ckey: the message's member
-- in the search indexes P:created and P:to:{touser}, redis/find.py). Returns per group
-- {'ok', id, status, created, ...} (created: 1 new, 0 a duplicate key, 2 a duplicate key whose
-- stored body fingerprint differs from this one's: a conflict, store/idempotency.py)
-- or {'err', reason}; a group is checked completely before any of it is written, so each call
-- is all-or-nothing.
local out = {}
local held = {}  -- batch id -> its new messages are parked (a held batch)
for g = 1, tonumber(ARGV[5]) do
  local group = cmsgpack.unpack(ARGV[5 + g])
  local bid, bdoc, recs = group[1], group[2], group[3]
  local res, fresh, ids, keys, err = {'ok'}, {}, {}, {}, nil
  if bid ~= '' and redis.call('EXISTS', bkey(bid)) == 1 then err = 'batch exists: ' .. bid end
  for _, r in ipairs(recs) do
    if err then break end
    local id, app, idem, status, digest = r[1], r[2], r[3], r[5], r[13] or ''
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
          local found = redis.call('HMGET', mkey(old), 'status', 'idem_digest')
          if found[1] then dup = {old, found[1], found[2] or ''} end
        end
      end
      if not dup then keys[ik] = {id, status, digest} end
    end
    if dup then
      local created = 0
      if dup[3] ~= '' and digest ~= '' and dup[3] ~= digest then created = 2 end
      res[#res + 1] = dup[1]; res[#res + 1] = dup[2]; res[#res + 1] = created
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
        -- A chunk of a streamed upload: parked until the batch runs (batch_status.lua).
        redis.call('SADD', bkey(mbid) .. ':parked', id)
      elseif status == 'scheduled' then
        redis.call('ZADD', P .. ':delayed', nb, id)
      else
        sid = xadd(id, app)
      end
      redis.call('HSET', mkey(id), 'doc', r[8], 'app', app, 'batch_id', mbid,
        'idem', idem, 'status', status, 'not_before', nb, 'created_at', created,
        'attempts', 0, 'lease_token', 0, 'sid', sid, 'cb', r[9] or '', 'shared', r[10] or '',
        'ckey', r[11], 'to', r[12], 'idem_digest', r[13] or '')
      -- `tr`: the trace context its webhook events copy (emit); absent without one
      if r[14] and r[14] ~= '' then redis.call('HSET', mkey(id), 'tr', r[14]) end
      redis.call('ZADD', P .. ':pending', created, id)
      redis.call('ZADD', P .. ':created', 0, r[11])
      redis.call('ZADD', P .. ':to:' .. r[12], 0, r[11])
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
    end
    out[g] = res
  end
end
flush()
return out
