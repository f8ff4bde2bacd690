-- POST /api/v2/agents/{agent}/recall with a JSON body, session token only, in hybrid mode
-- (full text and meaning together, the default where semantic recall exists; a server without
-- it ignores the field and searches text). Environment: BENCH_AGENT, BENCH_TOKEN (the runner
-- stores a few hundred memories first and waits for their embeddings).
wrk.method = "POST"
wrk.path = "/api/v2/agents/" .. os.getenv("BENCH_AGENT") .. "/recall"
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"query": "billing email", "limit": 10, "mode": "hybrid"}'
