-- PUT /v1/agent/service/register with a fresh instance id per request (TTL check, passing).
local counter = 0
local threads = {}
function setup(thread) thread:set("tid", #threads + 1); table.insert(threads, thread) end
function request()
  counter = counter + 1
  local body = string.format('{"name":"bench","id":"b-%d-%d","port":8080,"tags":["v1"],' ..
    '"check":{"ttl":"600s","status":"passing"}}', tid, counter)
  return wrk.format("PUT", "/v1/agent/service/register", nil, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
