-- POST /api/v2/agents/{agent}/remember with a JSON body, session token only.
-- Environment: BENCH_AGENT, BENCH_TOKEN; BENCH_DELAY_MS for the paced mode (pace.lua).
wrk.method = "POST"
wrk.path = "/api/v2/agents/" .. os.getenv("BENCH_AGENT") .. "/remember"
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"content": "Customer prefers email over phone calls for billing questions",'
  .. ' "type": "preference", "title": "Contact", "tags": ["contact", "billing"]}'
dofile("bench/wrk/pace.lua")
