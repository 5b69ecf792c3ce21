-- wrk script: POST pre-built bodies to /v1/events round robin, so that the generator costs
-- next to nothing per event (each request is formatted once, in init). Usage:
--   wrk -t2 -c8 -d15s -s bench/wrk/post-bodies.lua http://127.0.0.1:8080 -- DIR COUNT [API_KEY]
-- DIR holds body-000.json ... written by `loadgen bodies --out DIR --count COUNT`.

local requests = {}
local next_request = 0
local non_200 = 0

function init(args)
  local dir, count, key = args[1], tonumber(args[2]), args[3]
  if dir == nil or count == nil then
    error("usage: ... -- DIR COUNT [API_KEY]")
  end
  local headers = { ["Content-Type"] = "application/json" }
  if key ~= nil and key ~= "" then
    headers["Authorization"] = "Bearer " .. key
  end
  for i = 0, count - 1 do
    local path = string.format("%s/body-%03d.json", dir, i)
    local file = assert(io.open(path, "rb"), "cannot open " .. path)
    local body = file:read("*a")
    file:close()
    requests[#requests + 1] = wrk.format("POST", "/v1/events", headers, body)
  end
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end

function response(status, headers, body)
  if status ~= 200 then
    non_200 = non_200 + 1
  end
end

function done(summary, latency, requests)
  io.write(string.format("wrk: %d requests, %d errors, %.0f requests/s, p50 %.2f ms, p99 %.2f ms\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
