-- GET /api/v2/session/current with the API key and a session token (key + token check + Redis touch).
-- Environment: BENCH_KEY (API key), BENCH_TOKEN (session token); BENCH_DELAY_MS for the paced
-- mode (pace.lua).
wrk.method = "GET"
wrk.path = "/api/v2/session/current"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")
wrk.headers["X-Session-Token"] = os.getenv("BENCH_TOKEN")
dofile("bench/wrk/pace.lua")
