-- POST /v3/kv/put (etcd's JSON gateway) with key bench/<thread>-<n> and a 100-byte value.
local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
-- Global: etcd_txn.lua reuses it.
function b64(data)
  return ((data:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#data % 3 + 1])
end
local value = b64(string.rep("x", 100))
local counter = 0
local threads = {}
wrk.headers["Content-Type"] = "application/json"
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function request()
  counter = counter + 1
  local key = b64("bench/" .. tid .. "-" .. counter)
  return wrk.format("POST", "/v3/kv/put", nil, '{"key":"' .. key .. '","value":"' .. value .. '"}')
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
