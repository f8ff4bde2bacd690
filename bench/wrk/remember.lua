-- POST /api/v2/agents/{agent}/remember with a JSON body, session token only.
-- Environment: BENCH_AGENT, BENCH_TOKEN.
wrk.method = "POST"
wrk.path = "/api/v2/agents/" .. os.getenv("BENCH_AGENT") .. "/remember"
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"content": "Customer prefers email over phone calls for billing questions",'
  .. ' "type": "preference", "title": "Contact", "tags": ["contact", "billing"]}'

-- Paced mode (BENCH_DELAY_MS): each connection waits that long on average before each
-- request (uniformly 0 to twice that, so that the connections do not fall into step and
-- arrive in bursts), so the rate is about connections × 1000 / (delay + latency) per
-- second: latency at a chosen fraction of saturation rather than at saturation.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  math.randomseed(os.time())
  function delay()
    return math.floor(2 * pause * math.random() + 0.5) -- wrk takes whole milliseconds
  end
end
