-- SAML SSO (HTTP-Redirect AuthnRequest -> HTTP-POST SAMLResponse form) for bench/bench_saml.py.
--
-- wrk -t N -c N -d <s> --timeout <s> -s saml_sso.lua http://host:port -- <dir> <keep>
--
-- Thread i (1-based, numbered in setup()) reads its own slice of pre-generated, never-reused
-- request paths from <dir>/urls.<i> and its session cookie from <dir>/cookie.<i> (one line,
-- the Cookie header's value). When a thread runs out of paths it stops itself (never replays a
-- request ID) and reports ran_out. The first <keep> good response bodies per thread are written
-- to <dir>/body.<i>.<k>.html for the script to validate with pysaml2. (wrk calls request()
-- once on thread 1 before the run to check pipelining: that path is used up, never sent.)
-- done() prints one line:
-- WRK_RESULT {"ok":..,"non200":..,"noform":..,"sent":..,"ran_out":..,...}

local next_id = 1
local threads = {}

function setup(thread)
  thread:set("id", next_id)
  table.insert(threads, thread)
  next_id = next_id + 1
end

local reqs, pos, dir, keep
local stopped = false
ok, non200, noform, sent, ran_out, saved = 0, 0, 0, 0, 0, 0

function init(args)
  dir = args[1]
  keep = tonumber(args[2]) or 0
  local f = assert(io.open(dir .. "/cookie." .. id, "r"))
  local cookie = f:read("*l")
  f:close()
  reqs = {}
  for path in io.lines(dir .. "/urls." .. id) do
    if path ~= "" then
      local headers = {}
      if cookie and cookie ~= "" then
        headers["Cookie"] = cookie
      end
      reqs[#reqs + 1] = wrk.format("GET", path, headers)
    end
  end
  pos = 0
end

function request()
  if pos >= #reqs then
    -- Out of unique requests: stop this thread rather than replay one; what goes out now is
    -- not counted (response() ignores everything after the stop).
    if not stopped then
      stopped = true
      ran_out = 1
      wrk.thread:stop()
    end
    return wrk.format("GET", "/wrk-out-of-requests", {})
  end
  pos = pos + 1
  sent = sent + 1
  return reqs[pos]
end

function response(status, headers, body)
  if stopped then
    return
  end
  if status ~= 200 then
    non200 = non200 + 1
  elseif not string.find(body, 'name="SAMLResponse"', 1, true) then
    noform = noform + 1
  else
    ok = ok + 1
    if saved < keep then
      saved = saved + 1
      local f = io.open(dir .. "/body." .. id .. "." .. saved .. ".html", "w")
      if f then
        f:write(body)
        f:close()
      end
    end
  end
end

function done(summary, latency, requests)
  local t = { ok = 0, non200 = 0, noform = 0, sent = 0, ran_out = 0, saved = 0 }
  for _, thread in ipairs(threads) do
    for k, _ in pairs(t) do
      t[k] = t[k] + (tonumber(thread:get(k)) or 0)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"ok":%d,"non200":%d,"noform":%d,"sent":%d,"ran_out":%d,"saved":%d,'
      .. '"requests":%d,"duration_s":%.3f,"socket_errors":%d,"timeouts":%d,"p50_ms":%.2f,'
      .. '"p99_ms":%.2f}\n',
    t.ok, t.non200, t.noform, t.sent, t.ran_out, t.saved, summary.requests,
    summary.duration / 1e6, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
