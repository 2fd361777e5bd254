-- Authorization-code flows for a user with an SSO session, for bench/run.py: each flow is
-- GET /oauth2/authorize (the session cookie; answered 302 with a code) then POST /oauth2/token
-- (the code, the PKCE verifier, HTTP Basic). Run with one connection per thread (-c == -t):
-- the thread's state is its connection's. Thread i reads its Cookie header from <dir>/cookie.<i>.
-- wrk ... -s code_flow.lua URL -- <dir> <authorize path+query> <basic> <verifier> <redirect_uri>
-- done() prints: WRK_RESULT {"flows":..,"bad":..,"requests":..,"p50_ms":..,"p99_ms":..}
local next_id = 1
local threads = {}

function setup(thread)
  thread:set("id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

local cookie, authorize, basic, verifier, redirect_uri
local code = nil
flows, bad = 0, 0

local function urlencode(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function init(args)
  local f = assert(io.open(args[1] .. "/cookie." .. id, "r"))
  cookie = f:read("*l")
  f:close()
  authorize, basic, verifier, redirect_uri = args[2], args[3], args[4], args[5]
end

function request()
  if code == nil then
    return wrk.format("GET", authorize, { Cookie = cookie })
  end
  local body = "grant_type=authorization_code&code=" .. code .. "&code_verifier="
    .. verifier .. "&redirect_uri=" .. urlencode(redirect_uri)
  return wrk.format("POST", "/oauth2/token", {
    ["Content-Type"] = "application/x-www-form-urlencoded",
    ["Authorization"] = "Basic " .. basic,
  }, body)
end

function response(status, headers, body)
  if code == nil then
    local location = headers["Location"] or headers["location"] or ""
    local got = string.match(location, "[?&]code=([^&]+)")
    if status == 302 and got then
      code = got
    else
      bad = bad + 1
    end
    return
  end
  code = nil
  if status == 200 and string.find(body, '"id_token"', 1, true) then
    flows = flows + 1
  else
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local f, b = 0, 0
  for _, thread in ipairs(threads) do
    f = f + (tonumber(thread:get("flows")) or 0)
    b = b + (tonumber(thread:get("bad")) or 0)
  end
  local secs = summary.duration / 1e6
  io.write(string.format(
    'WRK_RESULT {"flows":%d,"bad":%d,"requests":%d,"duration_s":%.3f,"rps":%.1f,'
      .. '"p50_ms":%.3f,"p99_ms":%.3f,"socket_errors":%d}\n',
    f, b, summary.requests, secs, f / secs, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
