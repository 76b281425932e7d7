-- PUT /v1/txn: 16 KV sets of 100-byte values, keys bench/<thread>-<n>-<k>.
local value = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA=="
local counter = 0
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function request()
  counter = counter + 1
  local ops = {}
  for k = 1, 16 do
    ops[k] = '{"KV":{"Verb":"set","Key":"bench/' .. tid .. "-" .. counter .. "-" .. k .. '","Value":"' .. value .. '"}}'
  end
  return wrk.format("PUT", "/v1/txn", nil, "[" .. table.concat(ops, ",") .. "]")
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
