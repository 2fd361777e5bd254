-- Full password logins for bench/bench_login.py: GET /login (CSRF token in the HTML, Flask
-- session cookie) then POST /login -> 302 to /account/, each login a fresh browser.
--
-- wrk -t N -c N -d <s> --timeout <s> -s login.lua http://host:port -- <user prefix> <password>
--     [<device cookie of user 0>,<of user 1>,...]
--
-- One Lua state per wrk thread, so use one connection per thread (-t N -c N): each thread
-- alternates GET and POST on its connection; thread i (1-based) logs in as <prefix><i-1>.
-- The POST carries the cookies of the GET's response only, plus, with the third argument, the
-- user's device cookie (idp_device) on both requests: a returning browser, a known device.
-- wrk hands response() a table of header name -> value in which a repeated name keeps only its
-- last value, so the script checks with a Python client that GET /login sets one cookie before
-- it uses this.
-- A login counts on 302 with a Location ending in /account/; anything else is an error and the
-- thread starts a new login. done() prints one line:
-- WRK_RESULT {"logins":..,"errors":..,"bad_get":..,"bad_post":..,"lost":..,...}

local next_id = 1
local threads = {}

function setup(thread)
  thread:set("id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

logins, errors, bad_get, bad_post, lost = 0, 0, 0, 0, 0
first_error = ""

local user, password, get_req, token, cookie, device
local phase, waiting, seen = "get", nil, 0

local function enc(s)
  return (string.gsub(s, "[^%w%-%._~]", function(c)
    return string.format("%%%02X", string.byte(c))
  end))
end

local function values(headers, name)
  local out = {}
  for k, v in pairs(headers) do
    if string.lower(k) == name then
      out[#out + 1] = v
    end
  end
  return out
end

local function fail(what, status)
  errors = errors + 1
  if first_error == "" then
    first_error = what .. " " .. status
  end
  phase = "get"
end

function init(args)
  user = args[1] .. (id - 1)
  password = args[2]
  if args[3] and args[3] ~= "" then
    local i = 1
    for value in string.gmatch(args[3], "[^,]+") do
      if i == id then
        device = "idp_device=" .. value
      end
      i = i + 1
    end
  end
  get_req = wrk.format("GET", "/login", device and { ["Cookie"] = device } or {})
end

function request()
  -- A response never came (the connection broke and wrk reconnected): start a new login.
  -- (wrk also calls request() once on thread 1 before the run, hence seen > 0.)
  if waiting and seen > 0 then
    lost = lost + 1
    fail("lost", 0)
  end
  if phase == "post" then
    waiting = "post"
    local body = "csrf_token=" .. enc(token) .. "&username=" .. enc(user)
      .. "&password=" .. enc(password)
    return wrk.format("POST", "/login", {
      ["Cookie"] = cookie,
      ["Content-Type"] = "application/x-www-form-urlencoded",
    }, body)
  end
  waiting = "get"
  return get_req
end

function response(status, headers, body)
  seen = seen + 1
  local was = waiting
  waiting = nil
  if was == "get" then
    token = status == 200 and string.match(body, 'name="csrf_token" type="hidden" value="([^"]+)"')
    local jar = {}
    for _, v in ipairs(values(headers, "set-cookie")) do
      jar[#jar + 1] = string.match(v, "^%s*([^;]+)")
    end
    if token and #jar > 0 then
      if device then
        jar[#jar + 1] = device
      end
      cookie = table.concat(jar, "; ")
      phase = "post"
    else
      bad_get = bad_get + 1
      fail("GET", status)
    end
  elseif was == "post" then
    phase = "get"
    local loc = values(headers, "location")[1] or ""
    if status == 302 and string.sub(loc, -9) == "/account/" then
      logins = logins + 1
    else
      bad_post = bad_post + 1
      fail("POST", status)
    end
  end
end

function done(summary, latency, requests)
  local t = { logins = 0, errors = 0, bad_get = 0, bad_post = 0, lost = 0 }
  local first = ""
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (tonumber(thread:get(k)) or 0)
    end
    local fe = thread:get("first_error")
    if first == "" and fe and fe ~= "" then
      first = fe
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"logins":%d,"errors":%d,"bad_get":%d,"bad_post":%d,"lost":%d,'
      .. '"first_error":"%s","requests":%d,"duration_s":%.3f,"socket_errors":%d,'
      .. '"timeouts":%d,"p50_ms":%.2f,"p99_ms":%.2f}\n',
    t.logins, t.errors, t.bad_get, t.bad_post, t.lost, first, summary.requests,
    summary.duration / 1e6, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
