-- POST /v1/connect/ca/sign with one CSR (the body file given as the first script argument);
-- every request gets a fresh certificate with a new serial.
local body
function init(args)
  local f = assert(io.open(args[1], "r"))
  body = f:read("*a")
  f:close()
end
function request()
  return wrk.format("POST", "/v1/connect/ca/sign", {["Content-Type"] = "application/json"}, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.2f p99_ms=%.2f errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status + e.connect + e.read + e.write + e.timeout))
end
