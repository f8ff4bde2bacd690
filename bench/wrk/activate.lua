-- POST /api/v2/agents/{agent}/activate, a distinct agent per request (nothing is superseded:
-- each request creates an agent and its first session). Environment: BENCH_KEY, BENCH_RUN (a
-- prefix unique to the run, so that runs never reuse an agent).
local key = os.getenv("BENCH_KEY")
local run = os.getenv("BENCH_RUN")
local next_thread = 0
local counter = 0


function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

function request()
  counter = counter + 1
  local path = "/api/v2/agents/" .. run .. "-" .. (thread_id or 0) .. "-" .. counter .. "/activate"
  return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. key })
end
