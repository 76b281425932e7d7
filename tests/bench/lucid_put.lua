-- PUT /v1/kv/bench/<thread>-<n> with a 100-byte value.
local value = string.rep("x", 100)
local counter = 0
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function request()
  counter = counter + 1
  return wrk.format("PUT", "/v1/kv/bench/" .. tid .. "-" .. counter, nil, value)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
