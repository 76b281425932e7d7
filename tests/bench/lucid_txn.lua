-- PUT /v1/txn: 16 KV sets of 100-byte values, keys bench/<thread>-<n>-<k>. setup() and
-- done() come from lucid_put.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "lucid_put.lua")
local value = "eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eHh4eA=="
local counter = 0
function request()
  counter = counter + 1
  local ops = {}
  for k = 1, 16 do
    ops[k] = '{"KV":{"Verb":"set","Key":"bench/' .. tid .. "-" .. counter .. "-" .. k .. '","Value":"' .. value .. '"}}'
  end
  return wrk.format("PUT", "/v1/txn", nil, "[" .. table.concat(ops, ",") .. "]")
end
