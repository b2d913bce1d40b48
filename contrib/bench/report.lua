-- report.lua: appended by contrib/bench/run to every scenario's wrk script. Its done() hook
-- prints one machine-readable line with exact counts and latency percentiles in µs, so the
-- harness does not have to parse wrk's human-readable summary.
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "TGBENCH requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d " ..
        "status=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
        summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
        e.status, e.timeout, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, latency.mean))
end
