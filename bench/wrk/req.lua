-- One request shape per run, for bench/run.py.
-- Env: WRK_METHOD (GET|POST), WRK_BODY (form body), WRK_BASIC (base64 of id:secret),
--      WRK_BEARER (an access token), WRK_PATHS (several paths separated by "|", used in turn).
-- done() prints: WRK_RESULT {"requests":..,"rps":..,"p50_ms":..,"p99_ms":..,"bad":..,...}
local method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY") or ""
local headers = {}
if method == "POST" then
  headers["Content-Type"] = "application/x-www-form-urlencoded"
end
local basic = os.getenv("WRK_BASIC") or ""
if basic ~= "" then headers["Authorization"] = "Basic " .. basic end
local bearer = os.getenv("WRK_BEARER") or ""
if bearer ~= "" then headers["Authorization"] = "Bearer " .. bearer end
local paths = {}
for p in string.gmatch(os.getenv("WRK_PATHS") or "", "[^|]+") do paths[#paths + 1] = p end
local n = 0

function request()
  local path = nil
  if #paths > 0 then
    n = n + 1
    path = paths[(n % #paths) + 1]
  end
  return wrk.format(method, path, headers, method == "POST" and body or nil)
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"p50_ms":%.3f,"p99_ms":%.3f,'
      .. '"bad":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
