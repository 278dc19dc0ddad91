-- One app's lease (redis/queue.py spreads a lease over the apps, round-robin). ARGV[5]
-- consumer, [6] n, [7] lease_until, [8] promote cap, [9] max entries read. Returns the leased
-- messages (MESSAGE_FIELDS values each).
--
-- 1. Due scheduled/retrying messages move from P:delayed to the app's stream.
-- 2. Expired leases (lease_until <= now) move to the tail of the stream, still `sending`
--    under the old token until someone leases them (the old holder may still ack).
-- 3. The stream is read through the consumer group until n are leased or it runs dry.
--    Entries of messages that are no longer due are acked and skipped; those of paused
--    batches are parked in the batch's set until it runs again; those of cancelled batches
--    cancel their message.
-- 4. The stream is trimmed below its oldest unacked entry.
local consumer, n, lu = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local cap, read_cap = tonumber(ARGV[8]), tonumber(ARGV[9])

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

-- Tokens are taken from A:seq on the first lease of the call, so an app with nothing due
-- costs no write.
local token = nil
local batch_status = {}

local function take(eid, id)
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
  if not token then token = redis.call('INCRBY', P .. ':seq', n) - n end
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

local out, remaining, reads, sk, last = {}, n, 0, DUE, nil
while remaining > 0 and reads < read_cap do
  local want = math.min(remaining, read_cap - reads)
  local entries = readgroup(sk, want)
  reads = reads + #entries
  local skipped = {}
  for _, e in ipairs(entries) do
    local leased = take(e[1], e[2][2])
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
  if #entries > 0 then last = entries[#entries][1] end
  if #entries < want then break end
end
if last then trim(sk, last) end
flush()
return out
