-- wrk script: POST /api/jobs with a new message (and user) per request; prints one JSON summary line.
local n = 0
local tid = 0
local threads = {}

function setup(thread)
  tid = tid + 1
  thread:set("tid", tid)
  table.insert(threads, thread)
end

function request()
  n = n + 1
  local who = tostring(tid) .. "-" .. tostring(n)
  local body = '{"content": "wrk message ' .. who .. '", "user_id": "wrk-' .. who .. '"}'
  return wrk.format("POST", "/api/jobs", {["Content-Type"] = "application/json"}, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
