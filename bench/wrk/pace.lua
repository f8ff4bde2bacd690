-- Paced mode, shared by the scripts that load it (`dofile`, from the repository root, where
-- bench/run.py runs wrk). With BENCH_DELAY_MS set, each connection waits that long on average
-- before each request (uniformly 0 to twice that, so that the connections do not fall into
-- step and arrive in bursts), so the rate is about connections × 1000 / (delay + latency) per
-- second: latency at a chosen fraction of saturation rather than at saturation.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  math.randomseed(os.time())
  function delay()
    return math.floor(2 * pause * math.random() + 0.5) -- wrk takes whole milliseconds
  end
end
