-- KEYS[1] a receipt-link hash {v, blob, until} (ReceiptLinks, store/base.py); ARGV version,
-- blob ('' = delete), until, now, ttl_ms. Compare-and-set on v; an entry absent or expired by
-- `now` (the store's clock, as the contract judges it) has version 0. 1 if written, else 0.
local f = redis.call('HMGET', KEYS[1], 'v', 'until')
local v = 0
if f[1] and tonumber(f[2]) > tonumber(ARGV[4]) then v = tonumber(f[1]) end
if v ~= tonumber(ARGV[1]) then return 0 end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'v', v + 1, 'blob', ARGV[2], 'until', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
