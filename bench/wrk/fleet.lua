-- CI-fleet replay for wrk: every path in a list file fetched exactly once per pass,
-- spread over wrk's threads, each thread's share over its connections. A thread stops
-- when its share is answered and prints FLEETDONE; the harness then sends wrk SIGINT,
-- so wrk's duration is the time to fetch the whole list.
--
--   wrk -t2 -c16 -d300s -s fleet.lua -H 'Authorization: ...' http://127.0.0.1:PORT -- LIST THREADS PASSES
--
-- LIST has one request path per line. Prints a FLEETJSON line with the totals.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  local passes = tonumber(args[3] or "1")
  paths = {}
  local i = 0
  for line in io.lines(args[1]) do
    if line ~= "" then
      if i % nthreads == id then table.insert(paths, line) end
      i = i + 1
    end
  end
  share = #paths * passes
  sent = 0
  answered = 0
  ok = 0
  bad = 0
  extra = 0
  requests = {}
  for j, p in ipairs(paths) do requests[j] = wrk.format("GET", p) end
end

function request()
  if sent < share then
    sent = sent + 1
    return requests[((sent - 1) % #paths) + 1]
  end
  -- The share is sent; idle connections re-send the last request until the
  -- outstanding ones are answered (counted apart, not in the totals).
  extra = extra + 1
  return requests[#paths]
end

function response(status, headers, body)
  if answered >= share then return end
  answered = answered + 1
  if status == 200 then ok = ok + 1 else bad = bad + 1 end
  if answered == share then
    io.write("FLEETDONE\n")
    io.stdout:flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local ok_total, bad_total, answered_total, share_total, extra_total = 0, 0, 0, 0, 0
  for _, t in ipairs(threads) do
    ok_total = ok_total + t:get("ok")
    bad_total = bad_total + t:get("bad")
    answered_total = answered_total + t:get("answered")
    share_total = share_total + t:get("share")
    extra_total = extra_total + t:get("extra")
  end
  local e = summary.errors
  io.write(string.format(
    'FLEETJSON {"duration_us":%d,"bytes":%d,"responses":%d,"share":%d,"ok":%d,"bad":%d,"extra":%d,' ..
    '"socket_errors":%d,"timeouts":%d,"lat_p50_us":%d,"lat_p99_us":%d}\n',
    summary.duration, summary.bytes, answered_total, share_total, ok_total, bad_total, extra_total,
    e.connect + e.read + e.write, e.timeout, latency:percentile(50), latency:percentile(99)))
end
