-- wrk script: cycle through the metrics API paths in $BENCH_PATHS (one a line), with the bearer
-- token in $BENCH_TOKEN; at the end print one JSON line with the counts and latency percentiles
-- (microseconds) for the harness to parse.
local paths = {}
for line in io.lines(os.getenv("BENCH_PATHS")) do
  if #line > 0 then paths[#paths + 1] = line end
end
local headers = { ["Authorization"] = "Bearer " .. os.getenv("BENCH_TOKEN"), ["Accept"] = "application/json" }
local i = 0

function init(args)
  -- threads start at different offsets so they do not walk the list in lockstep
  i = math.random(#paths)
end

function request()
  i = i + 1
  return wrk.format("GET", paths[(i % #paths) + 1], headers)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "errors_connect": %d, "errors_read": %d, "errors_write": %d, "errors_status": %d, "errors_timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
