-- POST /api/v2/session/extend?extend_hours=0.001 (3.6 s), rotating over many live sessions so
-- that none reaches the 168 h lifetime cap. Environment: BENCH_TOKENS (comma-separated tokens).
local tokens = {}
for token in string.gmatch(os.getenv("BENCH_TOKENS"), "[^,]+") do
  tokens[#tokens + 1] = token
end
local counter = 0

function request()
  counter = counter + 1
  local token = tokens[(counter % #tokens) + 1]
  return wrk.format("POST", "/api/v2/session/extend?extend_hours=0.001", { ["X-Session-Token"] = token })
end
