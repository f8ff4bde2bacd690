-- POST /api/v2/agents/{agent}/recall with a JSON body, session token only.
-- Environment: BENCH_AGENT, BENCH_TOKEN (the runner stores a few hundred memories first).
wrk.method = "POST"
wrk.path = "/api/v2/agents/" .. os.getenv("BENCH_AGENT") .. "/recall"
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query": "billing email", "limit": 10}'
