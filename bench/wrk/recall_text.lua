-- POST /api/v2/agents/{agent}/recall in full-text mode only: the reference for hybrid recall.
-- Environment: BENCH_AGENT, BENCH_TOKEN (the same agent and memories as recall.lua).
wrk.method = "POST"
wrk.path = "/api/v2/agents/" .. os.getenv("BENCH_AGENT") .. "/recall"
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query": "billing email", "limit": 10, "mode": "text"}'
