-- wxgate bench: POST one JSON body (read from a file) on every connection.
-- wrk -s bench/lua/post.lua URL -- BODY_FILE [API_KEY] [ID_PREFIX]
-- With WXB_UNIQUE=1 in the environment, "__CMID__" in the body is replaced by a unique id per
-- request: ID_PREFIX (different for every wrk run) .. thread .. sequence, a fresh
-- client_msg_id for every send to the simulator.
-- Counts answers by status and the 2xx ones in 250 ms bins (monotonic clock via LuaJIT FFI),
-- and prints one line "WRKJSON {...}" with totals, latency percentiles and the bins.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } wxb_timespec;
int clock_gettime(int clk_id, wxb_timespec *tp);
]]
local ts = ffi.new("wxb_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local BIN_MS = 250
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb"))
  local body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  if args[2] and args[2] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[2]
  end
  pre, post = body:match("^(.-)__CMID__(.*)$")
  prefix = args[3] or ""
  statuses = {}
  bins = {}
  seq = 0
end

if os.getenv("WXB_UNIQUE") == "1" then
  function request()
    seq = seq + 1
    local body = pre .. prefix .. string.format("%02x%010x", tid, seq) .. post
    return wrk.format(nil, nil, nil, body)
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status < 300 then
    local b = math.floor(now_ms() / BIN_MS)
    bins[b] = (bins[b] or 0) + 1
  end
end

local function kv(t)
  local parts = {}
  for k, v in pairs(t) do
    table.insert(parts, string.format('"%s":%d', tostring(k), v))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local st, bn = {}, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + v end
    for k, v in pairs(t:get("bins")) do bn[k] = (bn[k] or 0) + v end
  end
  local binlist = {}
  for k, v in pairs(bn) do table.insert(binlist, string.format("[%d,%d]", k * BIN_MS, v)) end
  local ps = {}
  local marks = {}
  for p = 1, 99 do table.insert(marks, p) end
  for _, p in ipairs({99.5, 99.9, 99.99}) do table.insert(marks, p) end
  for _, p in ipairs(marks) do
    table.insert(ps, string.format('"%s":%d', tostring(p), latency:percentile(p)))
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"statuses":%s,"bin_ms":%d,"bins":[%s],' ..
    '"latency_us":{"min":%d,"mean":%.1f,"max":%d,"stdev":%.1f,"p":{%s}}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    kv(st), BIN_MS, table.concat(binlist, ","),
    latency.min, latency.mean, latency.max, latency.stdev, table.concat(ps, ",")))
end
