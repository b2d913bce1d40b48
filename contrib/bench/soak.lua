-- wrk script for contrib/bench/soak: a mix of small GETs, 1 KB JSON, 100 KB
-- bodies and 64 KB POST uploads; counts non-2xx answers.
local paths = { "/small", "/small", "/json1k", "/100k" }
local body = string.rep("x", 65536)
local n = 0
local bad = 0
request = function()
    n = n + 1
    if n % 5 == 0 then
        return wrk.format("POST", "/upload", { ["Content-Type"] = "application/octet-stream" }, body)
    end
    return wrk.format("GET", paths[(n % #paths) + 1])
end
response = function(status)
    if status < 200 or status > 299 then bad = bad + 1 end
end
done = function(summary, latency, requests)
    io.write(string.format("SOAK requests=%d errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d p99_ms=%.2f\n",
        summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
        summary.errors.status, summary.errors.timeout, latency:percentile(99) / 1000))
end
