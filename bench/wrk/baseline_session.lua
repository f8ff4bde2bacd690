-- GET /session on bench/baseline_app.py: Litestar server-side session read from Redis.
-- Environment: BENCH_COOKIE (the "session=…" cookie the runner obtained from POST /login).
wrk.method = "GET"
wrk.path = "/session"
wrk.headers["Cookie"] = os.getenv("BENCH_COOKIE")
