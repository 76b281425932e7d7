-- POST /v3/kv/txn (etcd's JSON gateway): 16 puts of 100-byte values in the success branch,
-- keys bench/<thread>-<n>-<k>. b64 and done() come from etcd_put.lua.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "etcd_put.lua")
local value = b64(string.rep("x", 100))
local counter = 0
function request()
  counter = counter + 1
  local ops = {}
  for k = 1, 16 do
    local key = b64("bench/" .. tid .. "-" .. counter .. "-" .. k)
    ops[k] = '{"requestPut":{"key":"' .. key .. '","value":"' .. value .. '"}}'
  end
  return wrk.format("POST", "/v3/kv/txn", nil, '{"success":[' .. table.concat(ops, ",") .. "]}")
end
