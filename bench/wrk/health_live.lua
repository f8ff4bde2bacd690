-- GET /health/live: the floor (the framework's own cost). No credentials.
wrk.method = "GET"
wrk.path = "/health/live"
